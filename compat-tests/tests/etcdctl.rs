//! etcdctl 3.4 against the server: commands, flags and parsed output (etcd-api.md §4).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use compat_tests::{hdr, keys, values, Member};
use etcd_client::{Client, GetOptions};
use serde_json::Value;

async fn put_all(c: &mut Client, kvs: &[(&str, &str)]) {
    for (k, v) in kvs {
        c.put(*k, *v, None).await.unwrap();
    }
}

fn b64(s: &str) -> String {
    B64.encode(s)
}

fn unb64(v: &Value) -> String {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    String::from_utf8(B64.decode(s).expect("base64")).expect("utf-8")
}

fn u64_field(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing or not an unsigned integer in {v}"))
}

fn i64_field(v: &Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} missing or not an integer in {v}"))
}

/// Standard fixture: a, b, c, foo, foo/1, fop (revisions 2..=7), then b again (revision 8).
async fn fixture(m: &Member) -> Client {
    let mut c = m.client().await;
    put_all(
        &mut c,
        &[
            ("a", "va"),
            ("b", "vb"),
            ("c", "vc"),
            ("foo", "vfoo"),
            ("foo/1", "vfoo1"),
            ("fop", "vfop"),
            ("b", "vb2"),
        ],
    )
    .await;
    c
}

#[tokio::test]
async fn put_and_prev_kv() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let out = m.etcdctl(&["put", "k", "v1"]).await;
    out.assert_success();
    assert_eq!(out.stdout, "OK\n");
    let g = c.get("k", None).await.unwrap();
    assert_eq!(values(g.kvs()), ["v1"]);
    assert_eq!(g.kvs()[0].mod_revision(), 2);

    let out = m.etcdctl(&["put", "k", "v2", "--prev-kv"]).await;
    out.assert_success();
    assert_eq!(out.lines(), ["OK", "k", "v1"]);
    // Value from stdin when omitted.
    let out = m.etcdctl_stdin(&["put", "k"], "from stdin").await;
    out.assert_success();
    assert_eq!(out.stdout, "OK\n");
    let g = c.get("k", None).await.unwrap();
    assert_eq!(values(g.kvs()), ["from stdin"]);
    assert_eq!(hdr(g.header()).revision(), 4);
}

#[tokio::test]
async fn get_single_and_missing() {
    let m = Member::start().await;
    fixture(&m).await;
    let out = m.etcdctl(&["get", "b"]).await;
    out.assert_success();
    assert_eq!(out.lines(), ["b", "vb2"]);
    let out = m.etcdctl(&["get", "nope"]).await;
    out.assert_success();
    assert_eq!(out.stdout, "");
    // [key, range_end)
    let out = m.etcdctl(&["get", "a", "c"]).await;
    out.assert_success();
    assert_eq!(out.lines(), ["a", "va", "b", "vb2"]);
}

#[tokio::test]
async fn get_prefix() {
    let m = Member::start().await;
    fixture(&m).await;
    let out = m.etcdctl(&["get", "foo", "--prefix"]).await;
    out.assert_success();
    assert_eq!(out.lines(), ["foo", "vfoo", "foo/1", "vfoo1"]);
    // Empty prefix = everything.
    let out = m.etcdctl(&["get", "", "--prefix", "--keys-only"]).await;
    out.assert_success();
    let ks: Vec<&str> = out.lines().into_iter().filter(|l| !l.is_empty()).collect();
    assert_eq!(ks, ["a", "b", "c", "foo", "foo/1", "fop"]);
}

#[tokio::test]
async fn get_from_key() {
    let m = Member::start().await;
    fixture(&m).await;
    let out = m.etcdctl(&["get", "c", "--from-key"]).await;
    out.assert_success();
    assert_eq!(
        out.lines(),
        ["c", "vc", "foo", "vfoo", "foo/1", "vfoo1", "fop", "vfop"]
    );
}

#[tokio::test]
async fn get_limit() {
    let m = Member::start().await;
    fixture(&m).await;
    let out = m.etcdctl(&["get", "", "--prefix", "--limit", "2"]).await;
    out.assert_success();
    assert_eq!(out.lines(), ["a", "va", "b", "vb2"]);
    // -w json shows more and count.
    let out = m
        .etcdctl(&["get", "", "--prefix", "--limit=2", "-w", "json"])
        .await;
    out.assert_success();
    let j = out.json();
    assert_eq!(j["more"], Value::Bool(true));
    assert_eq!(i64_field(&j, "count"), 6);
    assert_eq!(j["kvs"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn get_rev() {
    let m = Member::start().await;
    fixture(&m).await;
    let out = m.etcdctl(&["get", "b", "--rev", "3"]).await;
    out.assert_success();
    assert_eq!(out.lines(), ["b", "vb"]);
    let out = m
        .etcdctl(&["get", "", "--prefix", "--rev=4", "--keys-only"])
        .await;
    out.assert_success();
    let ks: Vec<&str> = out.lines().into_iter().filter(|l| !l.is_empty()).collect();
    assert_eq!(ks, ["a", "b", "c"]);
    // Future revision: error on stderr, exit code 1.
    let out = m.etcdctl(&["get", "b", "--rev", "100"]).await;
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("Error: etcdserver: mvcc: required revision is a future revision"),
        "{out}"
    );
}

#[tokio::test]
async fn get_sort_by_and_order() {
    let m = Member::start().await;
    fixture(&m).await;
    let key_lines =
        |s: &str| -> Vec<String> { s.lines().step_by(2).map(str::to_string).collect::<Vec<_>>() };
    let out = m
        .etcdctl(&["get", "", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"])
        .await;
    out.assert_success();
    assert_eq!(
        key_lines(&out.stdout),
        ["b", "fop", "foo/1", "foo", "c", "a"]
    );
    let out = m
        .etcdctl(&["get", "", "--prefix", "--sort-by=MODIFY", "--order=ASCEND"])
        .await;
    out.assert_success();
    assert_eq!(
        key_lines(&out.stdout),
        ["a", "c", "foo", "foo/1", "fop", "b"]
    );
    let out = m
        .etcdctl(&["get", "", "--prefix", "--sort-by=CREATE", "--order=DESCEND"])
        .await;
    out.assert_success();
    assert_eq!(
        key_lines(&out.stdout),
        ["fop", "foo/1", "foo", "c", "b", "a"]
    );
    let out = m.etcdctl(&["get", "", "--prefix", "--order=DESCEND"]).await;
    out.assert_success();
    assert_eq!(
        key_lines(&out.stdout),
        ["fop", "foo/1", "foo", "c", "b", "a"]
    );
    let out = m
        .etcdctl(&[
            "get",
            "",
            "--prefix",
            "--sort-by=VALUE",
            "--order=DESCEND",
            "--limit=2",
        ])
        .await;
    out.assert_success();
    assert_eq!(out.lines(), ["fop", "vfop", "foo/1", "vfoo1"]);
}

#[tokio::test]
async fn get_keys_only() {
    let m = Member::start().await;
    fixture(&m).await;
    let out = m.etcdctl(&["get", "foo", "--prefix", "--keys-only"]).await;
    out.assert_success();
    // Each key is followed by an empty line (the omitted value).
    assert_eq!(out.stdout, "foo\n\nfoo/1\n\n");
}

#[tokio::test]
async fn get_count_only_if_supported() {
    let m = Member::start().await;
    fixture(&m).await;
    let help = m.etcdctl(&["get", "--help"]).await;
    if !help.stdout.contains("--count-only") && !help.stderr.contains("--count-only") {
        eprintln!("etcdctl get has no --count-only (added in 3.5); skipping");
        return;
    }
    let out = m
        .etcdctl(&["get", "", "--prefix", "--count-only", "-w", "json"])
        .await;
    out.assert_success();
    let j = out.json();
    assert_eq!(i64_field(&j, "count"), 6);
    assert!(j.get("kvs").is_none());
}

#[tokio::test]
async fn get_print_value_only() {
    let m = Member::start().await;
    fixture(&m).await;
    let out = m.etcdctl(&["get", "b", "--print-value-only"]).await;
    out.assert_success();
    assert_eq!(out.stdout, "vb2\n");
    let out = m
        .etcdctl(&["get", "foo", "--prefix", "--print-value-only"])
        .await;
    out.assert_success();
    assert_eq!(out.lines(), ["vfoo", "vfoo1"]);
}

#[tokio::test]
async fn get_json() {
    let m = Member::start().await;
    let mut c = fixture(&m).await;
    let status = c.status().await.unwrap();
    let sh = hdr(status.header());
    let out = m.etcdctl(&["get", "b", "-w", "json"]).await;
    out.assert_success();
    let j = out.json();
    let h = &j["header"];
    assert_eq!(u64_field(h, "cluster_id"), sh.cluster_id());
    assert_eq!(u64_field(h, "member_id"), sh.member_id());
    assert_eq!(i64_field(h, "revision"), 8);
    assert!(u64_field(h, "raft_term") >= 1);
    assert_eq!(i64_field(&j, "count"), 1);
    let kvs = j["kvs"].as_array().expect("kvs");
    assert_eq!(kvs.len(), 1);
    let kv = &kvs[0];
    assert_eq!(kv["key"], Value::String(b64("b")));
    assert_eq!(unb64(&kv["key"]), "b");
    assert_eq!(unb64(&kv["value"]), "vb2");
    assert_eq!(i64_field(kv, "create_revision"), 3);
    assert_eq!(i64_field(kv, "mod_revision"), 8);
    assert_eq!(i64_field(kv, "version"), 2);
    // Zero fields are omitted (Go's encoding/json with omitempty).
    assert!(kv.get("lease").is_none(), "{kv}");
    assert!(j.get("more").is_none(), "{j}");

    // A missing key: no kvs, no count.
    let out = m.etcdctl(&["get", "nope", "-w", "json"]).await;
    out.assert_success();
    let j = out.json();
    assert!(j.get("kvs").is_none(), "{j}");
    assert!(j.get("count").is_none(), "{j}");
    assert_eq!(i64_field(&j["header"], "revision"), 8);
}

#[tokio::test]
async fn del_prefix_and_prev_kv() {
    let m = Member::start().await;
    let mut c = fixture(&m).await;
    let out = m.etcdctl(&["del", "foo", "--prefix", "--prev-kv"]).await;
    out.assert_success();
    assert_eq!(out.lines(), ["2", "foo", "vfoo", "foo/1", "vfoo1"]);
    let out = m.etcdctl(&["del", "nope"]).await;
    out.assert_success();
    assert_eq!(out.stdout, "0\n");
    let out = m.etcdctl(&["del", "a", "c"]).await;
    out.assert_success();
    assert_eq!(out.stdout, "2\n");
    let g = c
        .get("\0", Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(keys(g.kvs()), ["c", "fop"]);
    // Two deleting commands, two revisions; the empty delete took none.
    assert_eq!(hdr(g.header()).revision(), 10);
}

#[tokio::test]
async fn txn_success_path() {
    let m = Member::start().await;
    let mut c = fixture(&m).await;
    let input =
        "mod(\"a\") > \"0\"\nvalue(\"b\") = \"vb2\"\n\nput x 1\nget a\ndel c\n\nput y 2\n\n";
    let out = m.etcdctl_stdin(&["txn"], input).await;
    out.assert_success();
    assert_eq!(out.lines(), ["SUCCESS", "", "OK", "", "a", "va", "", "1"]);
    let g = c.get("x", None).await.unwrap();
    assert_eq!(values(g.kvs()), ["1"]);
    assert_eq!(g.kvs()[0].mod_revision(), 9);
    assert!(c.get("c", None).await.unwrap().kvs().is_empty());
    assert!(c.get("y", None).await.unwrap().kvs().is_empty());

    // The interactive form prints its prompts first.
    let input = "ver(\"x\") = \"1\"\n\nput x 2\n\nput y 2\n\n";
    let out = m.etcdctl_stdin(&["txn", "-i"], input).await;
    out.assert_success();
    assert_eq!(
        out.lines(),
        [
            "compares:",
            "success requests (get, put, del):",
            "failure requests (get, put, del):",
            "SUCCESS",
            "",
            "OK",
        ]
    );
    assert_eq!(values(c.get("x", None).await.unwrap().kvs()), ["2"]);
}

#[tokio::test]
async fn txn_failure_path() {
    let m = Member::start().await;
    let mut c = fixture(&m).await;
    let input = "ver(\"zzz\") = \"1\"\n\nput x 1\n\nput \"y\" \"2 3\"\nget y\ndel nope\n\n";
    let out = m.etcdctl_stdin(&["txn"], input).await;
    out.assert_success();
    assert_eq!(out.lines(), ["FAILURE", "", "OK", "", "y", "2 3", "", "0"]);
    assert!(c.get("x", None).await.unwrap().kvs().is_empty());
    let g = c.get("y", None).await.unwrap();
    assert_eq!(values(g.kvs()), ["2 3"]);
    assert_eq!(g.kvs()[0].mod_revision(), 9);

    // Compare on create revision, interactive; failure branch empty.
    let input = "create(\"a\") = \"3\"\n\nput a new\n\n\n";
    let out = m.etcdctl_stdin(&["txn", "-i"], input).await;
    out.assert_success();
    assert_eq!(
        out.lines(),
        [
            "compares:",
            "success requests (get, put, del):",
            "failure requests (get, put, del):",
            "FAILURE",
        ]
    );
    assert_eq!(values(c.get("a", None).await.unwrap().kvs()), ["va"]);
    let g = c.get("a", None).await.unwrap();
    assert_eq!(hdr(g.header()).revision(), 9);
}

#[tokio::test]
async fn compaction() {
    let m = Member::start().await;
    let mut c = fixture(&m).await;
    let out = m.etcdctl(&["compaction", "4"]).await;
    out.assert_success();
    assert_eq!(out.stdout, "compacted revision 4\n");
    let out = m.etcdctl(&["get", "b", "--rev", "3"]).await;
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("Error: etcdserver: mvcc: required revision has been compacted"),
        "{out}"
    );
    let out = m.etcdctl(&["compaction", "--physical", "6"]).await;
    out.assert_success();
    assert_eq!(out.stdout, "compacted revision 6\n");
    // Compacting again at a lower revision fails.
    let out = m.etcdctl(&["compaction", "5"]).await;
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("Error: etcdserver: mvcc: required revision has been compacted"),
        "{out}"
    );
    let g = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(g.count(), 6);
    assert_eq!(hdr(g.header()).revision(), 8);
}

#[tokio::test]
async fn endpoint_status_json() {
    let m = Member::start().await;
    let mut c = fixture(&m).await;
    let s = c.status().await.unwrap();
    let member_id = hdr(s.header()).member_id();
    let out = m.etcdctl(&["endpoint", "status", "-w", "json"]).await;
    out.assert_success();
    let j = out.json();
    let arr = j.as_array().expect("array of endpoints");
    assert_eq!(arr.len(), 1);
    let e = &arr[0];
    assert_eq!(e["Endpoint"], Value::String(m.endpoint()));
    let st = &e["Status"];
    assert_eq!(u64_field(&st["header"], "member_id"), member_id);
    assert_ne!(u64_field(&st["header"], "cluster_id"), 0);
    assert_eq!(i64_field(&st["header"], "revision"), 8);
    assert_eq!(u64_field(st, "leader"), member_id);
    let version = st["version"].as_str().expect("version");
    assert!(version.starts_with("3."), "{version}");
    assert!(i64_field(st, "dbSize") > 0);
    assert!(u64_field(st, "raftTerm") >= 1);
    let applied = u64_field(st, "raftAppliedIndex");
    assert!(applied > 0);
    assert!(u64_field(st, "raftIndex") >= applied);
    assert!(st.get("errors").is_none(), "{st}");
    assert!(st.get("isLearner").is_none(), "{st}");

    // The simple format: endpoint, hex id, version, db size, is leader, is learner, term, index,
    // applied index, errors.
    let out = m.etcdctl(&["endpoint", "status"]).await;
    out.assert_success();
    let fields: Vec<&str> = out.stdout.trim_end().split(", ").collect();
    assert_eq!(fields[0], m.endpoint());
    assert_eq!(fields[1], format!("{member_id:x}"));
    assert_eq!(fields[2], version);
    assert_eq!(fields[4], "true");
    assert_eq!(fields[5], "false");
}

#[tokio::test]
async fn endpoint_health() {
    let m = Member::start().await;
    let out = m.etcdctl(&["endpoint", "health"]).await;
    assert_eq!(out.status.code(), Some(0), "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(&format!(
            "{} is healthy: successfully committed proposal",
            m.endpoint()
        )),
        "{out}"
    );
    let out = m.etcdctl(&["endpoint", "health", "-w", "json"]).await;
    out.assert_success();
    let j = out.json();
    let e = &j.as_array().expect("array")[0];
    assert_eq!(e["endpoint"], Value::String(m.endpoint()));
    assert_eq!(e["health"], Value::Bool(true));
}

#[tokio::test]
async fn member_list_json() {
    let m = Member::start().await;
    let out = m.etcdctl(&["member", "list", "-w", "json"]).await;
    out.assert_success();
    let j = out.json();
    let members = j["members"].as_array().expect("members");
    assert_eq!(members.len(), 1);
    let mem = &members[0];
    assert_eq!(mem["name"], Value::String("m1".into()));
    assert_eq!(mem["peerURLs"], serde_json::json!([m.peer_url()]));
    assert_eq!(mem["clientURLs"], serde_json::json!([m.client_url()]));
    let id = u64_field(mem, "ID");
    assert_eq!(u64_field(&j["header"], "member_id"), id);
    assert_ne!(u64_field(&j["header"], "cluster_id"), 0);

    // Simple format: id, started, name, peer URLs, client URLs, is learner.
    let out = m.etcdctl(&["member", "list"]).await;
    out.assert_success();
    assert_eq!(
        out.stdout,
        format!(
            "{id:x}, started, m1, {}, {}, false\n",
            m.peer_url(),
            m.client_url()
        )
    );
}
