//! Multi-member clusters of the real binary on loopback: replication, crashes, partitions (SIGSTOP),
//! membership through etcdctl, snapshots for lagging members, full restarts (issue 3; checklist items
//! 14, 54, 65-75, 80, 106-108).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use compat_tests::{assert_grpc_code, assert_grpc_error, eventually, hdr, values, Cluster, Member};
use etcd_client::{Client, ConnectOptions, GetOptions, MemberAddOptions};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tonic::Code;

const NO_LEADER_TIMEOUT: &str =
    "etcdserver: request timed out, possibly due to previous leader failure";

async fn client_to(m: &Member, timeout: Duration) -> Client {
    m.client_timeout(timeout).await
}

/// Linearizable read of `prefix` on member `m`: (key -> (value, mod_revision)), header revision.
async fn read_all(m: &Member, prefix: &str) -> (HashMap<String, (String, i64)>, i64) {
    let mut c = client_to(m, Duration::from_secs(10)).await;
    let r = c
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .expect("linearizable read");
    let rev = r.header().expect("header").revision();
    let map = r
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_string(),
                (kv.value_str().unwrap().to_string(), kv.mod_revision()),
            )
        })
        .collect();
    (map, rev)
}

/// HashKV at `rev` on every running member; all must be equal.
async fn assert_hashkv_equal(cl: &mut Cluster, rev: i64) {
    let mut hashes = Vec::new();
    for m in cl.members.iter_mut() {
        if !m.is_running() {
            continue;
        }
        // Make sure the member has applied `rev` (a linearizable read waits for it).
        read_all(m, "\0").await;
        let mut c = m.client().await;
        let h = c.hash_kv(rev).await.expect("hashkv");
        assert_eq!(h.hash_revision(), rev);
        hashes.push(h.hash());
    }
    assert!(hashes.len() >= 2);
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "HashKV differs: {hashes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_and_serve_linearizable_reads_everywhere() {
    let mut cl = Cluster::start(3, &[]).await;
    let leader = cl.leader().await;
    for (i, m) in cl.members.iter().enumerate() {
        let mut c = m.client().await;
        let r = c.put(format!("k{i}"), format!("v{i}"), None).await.unwrap();
        assert_eq!(r.header().unwrap().revision(), i as i64 + 2);
    }
    for m in &cl.members {
        let (kv, rev) = read_all(m, "k").await;
        assert_eq!(rev, 4);
        assert_eq!(kv["k0"], ("v0".to_string(), 2));
        assert_eq!(kv["k2"], ("v2".to_string(), 4));
    }
    // Item 14: a serializable read on a follower.
    let follower = (leader + 1) % 3;
    let mut c = cl.members[follower].client().await;
    let r = c
        .get("k1", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(values(r.kvs()), ["v1"]);
    // Items 65, 67: Status and MemberList on every member agree.
    let leader_id = cl.member_id(leader).await;
    for (i, m) in cl.members.iter().enumerate() {
        let mut c = m.client().await;
        let s = c.status().await.unwrap();
        assert_eq!(s.leader(), leader_id);
        assert!(s.raft_index() >= s.raft_applied_index());
        assert!(s.raft_term() >= 1);
        assert!(!s.is_learner());
        assert!(s.errors().is_empty());
        assert_eq!(s.version().split('.').count(), 3);
        let ml = c.member_list().await.unwrap();
        let mut names: Vec<&str> = ml.members().iter().map(|m| m.name()).collect();
        names.sort();
        assert_eq!(names, ["m1", "m2", "m3"]);
        let me = ml
            .members()
            .iter()
            .find(|x| x.name() == format!("m{}", i + 1))
            .unwrap();
        assert_eq!(me.client_urls(), [m.client_url()]);
        assert_eq!(me.peer_urls(), [m.peer_url()]);
    }
    // Maintenance.Hash is equal on every member after the same writes.
    let mut hashes = Vec::new();
    for m in &cl.members {
        hashes.push(m.client().await.hash().await.unwrap().hash());
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "Hash differs: {hashes:?}"
    );
    // Item 80: equal HashKV everywhere; compacted and future revisions refused.
    assert_hashkv_equal(&mut cl, 4).await;
    let mut c = cl.members[leader].client().await;
    let h = c.hash_kv(0).await.unwrap();
    assert_eq!(h.compact_version(), -1);
    assert_grpc_error(
        c.hash_kv(5).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    c.compact(3, None).await.unwrap();
    assert_grpc_error(
        c.hash_kv(2).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_hashkv_equal(&mut cl, 4).await;
}

/// Waits until member `m` follows a leader other than `old_id`; returns the new leader's id.
async fn new_leader_seen_by(m: &Member, old_id: u64) -> u64 {
    let ep = m.endpoint();
    eventually(20, "a new leader among the majority", || {
        let ep = ep.clone();
        async move {
            let mut c = Client::connect([ep], None).await.ok()?;
            let s = c.status().await.ok()?;
            (s.leader() != 0 && s.leader() != old_id).then_some(s.leader())
        }
    })
    .await
}

/// A writer over all endpoints that records every acknowledged put (key -> revision).
struct Writer {
    acked: Arc<Mutex<Vec<(String, i64)>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    async fn start(cl: &Cluster) -> Writer {
        let mut clients = Vec::new();
        for m in &cl.members {
            clients.push(client_to(m, Duration::from_secs(3)).await);
        }
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) && i < 100_000 {
                let n = clients.len();
                let key = format!("w/{i:06}");
                if let Ok(r) = clients[i as usize % n]
                    .put(key.clone(), i.to_string(), None)
                    .await
                {
                    a.lock().await.push((key, r.header().unwrap().revision()));
                }
                i += 1;
            }
        });
        Writer { acked, stop, task }
    }

    async fn count(&self) -> usize {
        self.acked.lock().await.len()
    }

    async fn wait_more(&self, more: usize) {
        let target = self.count().await + more;
        eventually(60, "the writer makes progress", || async {
            (self.count().await >= target).then_some(())
        })
        .await;
    }

    async fn finish(self) -> Vec<(String, i64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let v = self.acked.lock().await.clone();
        v
    }
}

/// Every acknowledged write is on every member with its revision; revisions never repeat (K2, K6).
async fn assert_acked_everywhere(cl: &mut Cluster, acked: &[(String, i64)]) {
    let mut revs: Vec<i64> = acked.iter().map(|(_, r)| *r).collect();
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(
        revs.len(),
        acked.len(),
        "two acknowledged writes share a revision"
    );
    let mut last = 0;
    for m in cl.members.iter_mut() {
        let (kv, rev) = read_all(m, "w/").await;
        for (k, r) in acked {
            let got = kv.get(k).unwrap_or_else(|| panic!("{} lost {k}", m.name()));
            assert_eq!(got.1, *r, "{} has {k} at another revision", m.name());
        }
        last = last.max(rev);
    }
    assert_hashkv_equal(cl, last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_follower_crash_then_a_leader_crash() {
    let mut cl = Cluster::start(3, &[]).await;
    let w = Writer::start(&cl).await;
    w.wait_more(50).await;
    let leader = cl.leader().await;
    let follower = (leader + 1) % 3;
    cl.members[follower].kill9();
    w.wait_more(50).await;
    cl.members[follower].restart().await;
    w.wait_more(20).await;
    let leader = cl.leader().await;
    cl.members[leader].kill9();
    // The other two elect a leader and keep serving.
    w.wait_more(50).await;
    cl.members[leader].restart().await;
    w.wait_more(20).await;
    let acked = w.finish().await;
    assert!(acked.len() >= 190);
    assert_acked_everywhere(&mut cl, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_keep_serving_with_two_down() {
    let mut cl = Cluster::start(5, &[]).await;
    let leader = cl.leader().await;
    let down: Vec<usize> = (0..5).filter(|&i| i != leader).take(2).collect();
    for &i in &down {
        cl.members[i].kill9();
    }
    let up = (0..5).find(|i| *i != leader && !down.contains(i)).unwrap();
    let mut c = cl.members[up].client().await;
    let r = c.put("five", "ok", None).await.unwrap();
    let (kv, _) = read_all(&cl.members[leader], "five").await;
    assert_eq!(
        kv["five"],
        ("ok".to_string(), r.header().unwrap().revision())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_with_two_down_refuse_writes_and_serve_serializable_reads() {
    let mut cl = Cluster::start(3, &[]).await;
    cl.members[0]
        .client()
        .await
        .put("k", "v", None)
        .await
        .unwrap();
    read_all(&cl.members[2], "k").await;
    cl.members[0].kill9();
    cl.members[1].kill9();
    let survivor = &cl.members[2];
    // Item 66: Status shows no leader once the survivor notices.
    let mut c = survivor.client().await;
    eventually(20, "the survivor loses its leader", || {
        let mut c = c.clone();
        async move {
            let s = c.status().await.ok()?;
            (s.leader() == 0).then_some(())
        }
    })
    .await;
    let s = c.status().await.unwrap();
    assert_eq!(s.errors(), ["etcdserver: no leader"]);
    // Item 103: /health is false (503) without a leader.
    let h = compat_tests::http::http_get(&survivor.endpoint(), "/health", "").await;
    assert_eq!(h.status, 503, "{}", h.body);
    let body: serde_json::Value = serde_json::from_str(&h.body).unwrap();
    assert_eq!(body["health"], "false");
    if !compat_tests::is_etcd() {
        assert_eq!(body["reason"], "RAFT NO LEADER");
        let h = compat_tests::http::http_get(&survivor.endpoint(), "/readyz", "").await;
        assert_eq!(h.status, 503, "{}", h.body);
        assert!(h.body.starts_with("[-]leader failed"), "{}", h.body);
        let h = compat_tests::http::http_get(&survivor.endpoint(), "/health?serializable=true", "")
            .await;
        assert_eq!(
            (h.status, h.body.as_str()),
            (200, r#"{"health":"true","reason":""}"#)
        );
    }
    // Writes fail with etcd's error after the request timeout.
    let mut slow = client_to(survivor, Duration::from_secs(30)).await;
    assert_grpc_error(
        slow.put("k", "v2", None).await,
        Code::Unavailable,
        NO_LEADER_TIMEOUT,
    );
    // Serializable reads are still served.
    let r = c
        .get("k", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(values(r.kvs()), ["v"]);
    // Item 54: with `hasleader` metadata, requests fail at once with `no leader`.
    let o = ConnectOptions::new()
        .with_require_leader(true)
        .with_timeout(Duration::from_secs(5));
    let mut hl = Client::connect([survivor.endpoint()], Some(o))
        .await
        .unwrap();
    assert_grpc_error(
        hl.get("k", Some(GetOptions::new().with_serializable()))
            .await,
        Code::Unavailable,
        "etcdserver: no leader",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_rejoins() {
    let mut cl = Cluster::start(3, &[]).await;
    let old = cl.leader().await;
    let old_id = cl.member_id(old).await;
    cl.members[old]
        .client()
        .await
        .put("p", "1", None)
        .await
        .unwrap();
    cl.members[old].signal(libc::SIGSTOP);
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    // The majority elects a new leader and keeps serving.
    let new_leader = new_leader_seen_by(&cl.members[others[0]], old_id).await;
    let mut c = client_to(&cl.members[others[0]], Duration::from_secs(10)).await;
    let r = c.put("p", "2", None).await.unwrap();
    let rev = r.header().unwrap().revision();
    cl.members[old].signal(libc::SIGCONT);
    // The old leader rejoins as a follower and sees the majority's write.
    let m = &cl.members[old];
    eventually(20, "the old leader catches up", || async {
        let (kv, _) = read_all_opt(m, "p").await?;
        (kv.get("p") == Some(&("2".to_string(), rev))).then_some(())
    })
    .await;
    let s = cl.members[old].client().await.status().await.unwrap();
    assert_eq!(s.leader(), new_leader);
}

async fn read_all_opt(m: &Member, prefix: &str) -> Option<(HashMap<String, (String, i64)>, i64)> {
    let mut c = client_to(m, Duration::from_secs(3)).await;
    let r = c
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .ok()?;
    let rev = r.header()?.revision();
    Some((
        r.kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key_str().unwrap().to_string(),
                    (kv.value_str().unwrap().to_string(), kv.mod_revision()),
                )
            })
            .collect(),
        rev,
    ))
}

/// The value of `NAME="value"` in etcdctl member add output.
fn env_line(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_learner_add_start_promote_and_remove() {
    let mut cl = Cluster::start(3, &[]).await;
    let ep = cl.members[0].endpoint();
    let peer_port = compat_tests::ports::free_ports(1)[0];
    let peer = format!("http://127.0.0.1:{peer_port}");
    // Items 68, 93: etcdctl member add --learner prints what the new member needs.
    let out = compat_tests::etcdctl(
        &ep,
        &[
            "member",
            "add",
            "m4",
            &format!("--peer-urls={peer}"),
            "--learner",
        ],
        None,
    )
    .await;
    out.assert_success();
    assert!(out.stdout.contains(" added to cluster "), "{}", out.stdout);
    let initial = env_line(&out.stdout, "ETCD_INITIAL_CLUSTER");
    assert!(initial.contains(&format!("m4={peer}")), "{initial}");
    for m in &cl.members {
        assert!(
            initial.contains(&format!("{}={}", m.name(), m.peer_url())),
            "{initial}"
        );
    }
    assert_eq!(
        env_line(&out.stdout, "ETCD_INITIAL_CLUSTER_STATE"),
        "existing"
    );
    let list = compat_tests::etcdctl(&ep, &["member", "list"], None).await;
    assert!(
        list.stdout
            .lines()
            .any(|l| l.contains("unstarted") && l.contains(&peer)),
        "{}",
        list.stdout
    );
    // Item 70: a second learner is refused.
    let mut c = cl.members[0].client().await;
    assert_grpc_error(
        c.member_add(
            ["http://127.0.0.1:1"],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await,
        Code::FailedPrecondition,
        "etcdserver: too many learner members in cluster",
    );
    // Item 69: an existing peer URL, and a malformed one.
    assert_grpc_error(
        c.member_add([peer.as_str()], None).await,
        Code::FailedPrecondition,
        "etcdserver: Peer URLs already exists",
    );
    assert_grpc_error(
        c.member_add(["http://127.0.0.1:notaport"], None).await,
        Code::InvalidArgument,
        "etcdserver: given member URLs are invalid",
    );
    // Item 71: a learner that has not caught up (not even started) cannot be promoted.
    let m4_id = c
        .member_list()
        .await
        .unwrap()
        .members()
        .iter()
        .find(|m| m.peer_urls() == [peer.clone()])
        .unwrap()
        .id();
    assert_grpc_error(
        c.member_promote(m4_id).await,
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader",
    );
    // Start the learner as etcdctl told.
    let mut m4 = cl.new_joining_member("m4", &initial, peer_port, &[]);
    m4.spawn_process();
    m4.wait_serving().await;
    let mut c4 = m4.client().await;
    let s = c4.status().await.unwrap();
    assert!(s.is_learner());
    // Item 72: a learner serves Status and serializable reads only.
    c.put("learned", "yes", None).await.unwrap();
    eventually(20, "the learner catches up", || {
        let mut c4 = c4.clone();
        async move {
            let r = c4
                .get("learned", Some(GetOptions::new().with_serializable()))
                .await
                .ok()?;
            (values(r.kvs()) == ["yes"]).then_some(())
        }
    })
    .await;
    assert_grpc_error(
        c4.get("learned", None).await,
        Code::Unavailable,
        "etcdserver: rpc not supported for learner",
    );
    assert_grpc_error(
        c4.put("x", "y", None).await,
        Code::Unavailable,
        "etcdserver: rpc not supported for learner",
    );
    // Item 71: promoting a voter is refused; the caught-up learner is promoted.
    let id1 = cl.member_id(1).await;
    assert_grpc_error(
        c.member_promote(id1).await,
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member",
    );
    let id4 = c4.status().await.unwrap().header().unwrap().member_id();
    eventually(30, "the learner is promoted", || {
        let mut c = c.clone();
        async move { c.member_promote(id4).await.ok() }
    })
    .await;
    // m4 reports the promotion once it has applied it itself.
    eventually(20, "m4 to apply its promotion", || {
        let mut c4 = c4.clone();
        async move { (!c4.status().await.ok()?.is_learner()).then_some(()) }
    })
    .await;
    // Item 73: removing an unknown member; removing a follower leaves a serving cluster and the
    // removed member stops by itself.
    assert_grpc_error(
        c.member_remove(0x1234).await,
        Code::NotFound,
        "etcdserver: member not found",
    );
    let leader = cl.leader().await;
    let victim = (0..3).find(|&i| i != leader && i != 0).unwrap();
    let vid = cl.member_id(victim).await;
    let out = compat_tests::etcdctl(&ep, &["member", "remove", &format!("{vid:x}")], None).await;
    out.assert_success();
    assert!(
        out.stdout.contains("removed from cluster"),
        "{}",
        out.stdout
    );
    eventually(20, "the removed member exits", || {
        let running = cl.members[victim].is_running();
        async move { (!running).then_some(()) }
    })
    .await;
    let r = c.put("after", "removal", None).await.unwrap();
    let (kv, _) = read_all(&m4, "after").await;
    assert_eq!(kv["after"].1, r.header().unwrap().revision());
    let ml = c.member_list().await.unwrap();
    assert_eq!(ml.members().len(), 3);
    assert!(!ml.members().iter().any(|m| m.id() == vid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_reconfiguration_refuses_a_voter_while_a_member_is_down() {
    // Item 74: m3 is configured but never started.
    let cl = Cluster::start_some(3, &[], 2).await;
    let mut c = cl.members[0].client().await;
    assert_grpc_error(
        c.member_add(["http://127.0.0.1:2"], None).await,
        Code::FailedPrecondition,
        "etcdserver: re-configuration failed due to not enough started members",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_update_changes_peer_urls_with_etcds_errors() {
    // m3 is configured but never started, so moving its peer URL disturbs nothing.
    let cl = Cluster::start_some(3, &[], 2).await;
    let mut c = cl.members[0].client().await;
    let list = c.member_list().await.unwrap();
    let m3 = list
        .members()
        .iter()
        .find(|m| m.name() == "m3")
        .unwrap()
        .clone();
    let moved = format!("http://127.0.0.1:{}", compat_tests::ports::free_ports(1)[0]);
    let r = c.member_update(m3.id(), [moved.clone()]).await.unwrap();
    let now = r.members().iter().find(|m| m.id() == m3.id()).unwrap();
    assert_eq!(now.peer_urls(), std::slice::from_ref(&moved));
    // m2 answers MemberList from its own applied state: it sees the update once it applied it.
    let c2 = cl.members[1].client().await;
    eventually(10, "m2 to list the moved peer URL", || {
        let mut c2 = c2.clone();
        let moved = moved.clone();
        async move {
            let list = c2.member_list().await.ok()?;
            list.members()
                .iter()
                .any(|m| m.peer_urls() == [moved.clone()])
                .then_some(())
        }
    })
    .await;
    assert_grpc_error(
        c.member_update(m3.id(), [cl.members[0].peer_url()]).await,
        Code::FailedPrecondition,
        "etcdserver: Peer URLs already exists",
    );
    assert_grpc_error(
        c.member_update(0x4242, [moved.clone()]).await,
        Code::NotFound,
        "etcdserver: member not found",
    );
    assert_grpc_error(
        c.member_update(m3.id(), vec!["http://127.0.0.1:notaport".to_string()])
            .await,
        Code::InvalidArgument,
        "etcdserver: given member URLs are invalid",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_on_leader_and_errors_elsewhere() {
    // Item 75.
    let mut cl = Cluster::start(3, &[]).await;
    let leader = cl.leader().await;
    let target = (leader + 1) % 3;
    let target_id = cl.member_id(target).await;
    let mut on_follower = cl.members[target].client().await;
    assert_grpc_error(
        on_follower.move_leader(target_id).await,
        Code::FailedPrecondition,
        "etcdserver: not leader",
    );
    let mut c = cl.members[leader].client().await;
    assert_grpc_error(
        c.move_leader(0xdead).await,
        Code::FailedPrecondition,
        "etcdserver: bad leader transferee",
    );
    let moved = c.move_leader(target_id).await.unwrap();
    // etcd answers with an empty message: no header (the etcd-client crate's tests check this).
    assert!(moved.header().is_none(), "{moved:?}");
    let s = on_follower.status().await.unwrap();
    assert_eq!(s.leader(), target_id);
    assert_eq!(cl.leader().await, target);
    // etcdctl's move-leader goes through the same RPC.
    let back = cl.member_id(leader).await;
    let eps = cl.endpoints().join(",");
    let out = compat_tests::etcdctl(&eps, &["move-leader", &format!("{back:x}")], None).await;
    out.assert_success();
    assert!(
        out.stdout.contains("Leadership transferred"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_down_past_log_compaction_catches_up_through_a_snapshot() {
    let mut cl = Cluster::start(
        3,
        &[
            "--snapshot-count",
            "20",
            "--experimental-snapshot-catchup-entries",
            "5",
        ],
    )
    .await;
    let leader = cl.leader().await;
    let lagging = (leader + 1) % 3;
    cl.members[lagging].kill9();
    let mut c = cl.members[leader].client().await;
    let mut last = 0;
    for i in 0..120 {
        last = c
            .put(format!("s/{i:03}"), format!("{i}"), None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
    }
    // An alarm, then enough entries (deletes of nothing: allowed under NOSPACE, no new revision) for
    // the log to be compacted past it: the lagging member can only learn it from the snapshot.
    let alarmed = hdr(c.status().await.unwrap().header()).member_id();
    let mut o = etcd_client::AlarmOptions::new();
    o.with_member(alarmed);
    c.alarm(
        etcd_client::AlarmAction::Activate,
        etcd_client::AlarmType::Nospace,
        Some(o),
    )
    .await
    .unwrap();
    for i in 0..40 {
        c.delete(format!("nothing/{i}"), None).await.unwrap();
    }
    cl.members[lagging].restart().await;
    let (kv, rev) = read_all(&cl.members[lagging], "s/").await;
    assert_eq!(kv.len(), 120);
    assert_eq!(kv["s/119"], ("119".to_string(), last));
    assert!(rev >= last);
    assert!(
        cl.members[lagging]
            .log()
            .contains("installed snapshot from the leader"),
        "the lagging member did not catch up through a snapshot"
    );
    let mut lc = cl.members[lagging].client().await;
    let want = vec![format!("memberID:{alarmed} alarm:NOSPACE ")];
    eventually(10, "the caught-up member reports the alarm", || {
        let mut lc = lc.clone();
        let want = want.clone();
        async move {
            let errors = lc.status().await.ok()?.errors().to_vec();
            (errors == want).then_some(())
        }
    })
    .await;
    assert_grpc_error(
        lc.put("s/000", "x", None).await,
        Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded",
    );
    assert_hashkv_equal(&mut cl, last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_kill_and_restart_keeps_every_acknowledged_write() {
    // Item 107.
    let mut cl = Cluster::start(3, &[]).await;
    let w = Writer::start(&cl).await;
    w.wait_more(100).await;
    for m in cl.members.iter_mut() {
        m.kill9();
    }
    let acked = w.finish().await;
    for m in cl.members.iter_mut() {
        m.spawn_process();
    }
    for m in cl.members.iter_mut() {
        m.wait_serving().await;
    }
    assert_acked_everywhere(&mut cl, &acked).await;
    // Revisions continue after the highest acknowledged one.
    let top = acked.iter().map(|(_, r)| *r).max().unwrap();
    let r = cl.members[0]
        .client()
        .await
        .put("next", "1", None)
        .await
        .unwrap();
    assert!(r.header().unwrap().revision() > top);
    let (kv, _) = read_all(&cl.members[1], "next").await;
    assert_eq!(keys_of(&kv), ["next"]);
}

fn keys_of(kv: &HashMap<String, (String, i64)>) -> Vec<String> {
    let mut k: Vec<String> = kv.keys().cloned().collect();
    k.sort();
    k
}

/// Randomized faults while a writer runs: kill -9 and restart, SIGSTOP/SIGCONT, leader moves, one
/// member disturbed at a time. At the end every acknowledged write is on every member at its revision
/// and no revision was given twice. `FAULT_RUN_SECS` sets the length (CI runs the short default;
/// `scripts/fault-run.sh` runs it for minutes). `FAULT_RUN_SEED` replays a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_fault_run_loses_and_duplicates_nothing() {
    let secs = compat_tests::seeded::secs("FAULT_RUN_SECS", 15);
    let seed = compat_tests::seeded::seed("FAULT_RUN_SEED");
    eprintln!("fault run: {secs} s, FAULT_RUN_SEED={seed}");
    let mut rng = compat_tests::seeded::Rng::new(seed);
    let mut next = move |n: u64| rng.below(n);
    let mut cl = Cluster::start(3, &[]).await;
    let w = Writer::start(&cl).await;
    w.wait_more(20).await;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut faults = Vec::new();
    while Instant::now() < end {
        let victim = next(3) as usize;
        match next(3) {
            0 => {
                faults.push(format!("kill -9 m{}", victim + 1));
                cl.members[victim].kill9();
                w.wait_more(10).await;
                cl.members[victim].restart().await;
            }
            1 => {
                faults.push(format!("SIGSTOP m{}", victim + 1));
                cl.members[victim].signal(libc::SIGSTOP);
                w.wait_more(10).await;
                cl.members[victim].signal(libc::SIGCONT);
            }
            _ => {
                let leader = cl.leader().await;
                let target = (leader + 1 + next(2) as usize) % 3;
                faults.push(format!("move leader m{} -> m{}", leader + 1, target + 1));
                let id = cl.member_id(target).await;
                let mut c = cl.members[leader].client().await;
                // A transfer may race with an election; only the data checks below matter.
                let _ = c.move_leader(id).await;
            }
        }
        w.wait_more(10).await;
    }
    let acked = w.finish().await;
    eprintln!(
        "fault run: {} faults, {} acknowledged writes: {faults:?}",
        faults.len(),
        acked.len()
    );
    assert_acked_everywhere(&mut cl, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_serves_no_linearizable_request_and_rejoins_after_healing() {
    // Item 108 with a real partition: nothing the others send reaches the old leader.
    let mut cl = Cluster::start_proxied(3, &[]).await;
    let old = cl.leader().await;
    let old_id = cl.member_id(old).await;
    cl.members[old]
        .client()
        .await
        .put("p", "1", None)
        .await
        .unwrap();
    for m in &cl.members {
        read_all(m, "p").await;
    }
    cl.proxies[old].block();
    // The majority elects a new leader and keeps serving.
    let other = (old + 1) % 3;
    let new_leader = new_leader_seen_by(&cl.members[other], old_id).await;
    let mut c = client_to(&cl.members[other], Duration::from_secs(10)).await;
    let rev = c
        .put("p", "2", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    // The old leader serves no linearizable read or write (no split brain)...
    let mut isolated = client_to(&cl.members[old], Duration::from_secs(20)).await;
    assert_grpc_code(isolated.put("p", "split", None).await, Code::Unavailable);
    assert_grpc_code(isolated.get("p", None).await, Code::Unavailable);
    // ...while a serializable read may be stale.
    let r = isolated
        .get("p", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(values(r.kvs()), ["1"]);
    // After healing it rejoins and sees the majority's write; its refused write never happened.
    cl.proxies[old].unblock();
    let m = &cl.members[old];
    eventually(30, "the old leader rejoins", || async {
        let (kv, _) = read_all_opt(m, "p").await?;
        (kv.get("p") == Some(&("2".to_string(), rev))).then_some(())
    })
    .await;
    let s = cl.members[old].client().await.status().await.unwrap();
    assert_eq!(s.leader(), new_leader);
    let li = new_leader_index(&mut cl, new_leader).await;
    let (kv, _) = read_all(&cl.members[li], "p").await;
    assert_eq!(kv["p"], ("2".to_string(), rev));
}

async fn new_leader_index(cl: &mut Cluster, id: u64) -> usize {
    for i in 0..cl.members.len() {
        if cl.member_id(i).await == id {
            return i;
        }
    }
    panic!("no member with id {id:x}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_refuses_raft_traffic_from_another_cluster() {
    // Cluster A (one member) and a member of cluster B whose configuration names A's peer URL: B's
    // raft messages reach A, which refuses them (different cluster id) and keeps serving alone.
    let a = Cluster::start(1, &[]).await;
    let a_peer = a.members[0].peer_url();
    let b_ports = compat_tests::ports::free_ports(2);
    let initial = format!("b1=http://127.0.0.1:{},a1={a_peer}", b_ports[1]);
    let mut b = a.new_joining_member(
        "b1",
        &initial,
        b_ports[1],
        &["--initial-cluster-token", "other-cluster"],
    );
    // new_joining_member asks for `existing`; make it bootstrap a new (different) cluster instead.
    b.config_mut()
        .extra_args
        .retain(|x| x != "--initial-cluster-state" && x != "existing");
    b.spawn_process();
    let m = &a.members[0];
    eventually(20, "A refuses B's messages", || async {
        m.log()
            .contains("refused raft traffic from another cluster")
            .then_some(())
    })
    .await;
    let mut c = m.client().await;
    let r = c.put("still", "serving", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 2);
    let ml = c.member_list().await.unwrap();
    assert_eq!(ml.members().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_cluster_member_with_open_streams() {
    // Peers' raft streams, a lease keep-alive and a watch stay open on m1; SIGTERM must still stop it
    // (cleanly, exit 0) and the others keep serving.
    let mut cl = Cluster::start(3, &[]).await;
    let mut c = cl.members[0].client().await;
    let id = c.lease_grant(60, None).await.unwrap().id();
    let (_keeper, _stream) = c.lease_keep_alive(id).await.unwrap();
    let _watch = c.watch("x", None).await.unwrap();
    let m1 = cl.member_id(0).await;
    let status = cl.members[0].terminate().await;
    assert!(status.success(), "{status:?}");
    // If m1 led, a proposal forwarded to it before the others noticed would be lost: wait for them.
    new_leader_seen_by(&cl.members[1], m1).await;
    let mut other = client_to(&cl.members[1], Duration::from_secs(10)).await;
    other.put("after", "stop", None).await.unwrap();
}
