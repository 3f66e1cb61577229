//! The `/v3/*` JSON gateway (etcd-api.md §3, checklist items 98-101): POST bodies and answers in
//! proto3 JSON (base64 bytes, int64 as strings, proto field names, defaults left out), errors as
//! grpc-gateway v1 writes them, and the chunked watch and keepalive streams.

use compat_tests::http::{http_post, HttpStream};
use compat_tests::Member;
use serde_json::Value;

async fn post(m: &Member, path: &str, body: &str) -> (u16, Value) {
    let r = http_post(&m.endpoint(), path, body).await;
    let v = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {:?}", r.body));
    (r.status, v)
}

#[tokio::test]
async fn put_range_and_txn_in_json() {
    let m = Member::start().await;
    // Item 98.
    let (st, v) = post(&m, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["header"]["revision"], "2");
    assert!(v["header"]["cluster_id"].is_string(), "{v}");
    assert!(v.get("prev_kv").is_none(), "{v}");
    // Item 99.
    let (st, v) = post(&m, "/v3/kv/range", r#"{"key":"Zm9v"}"#).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["count"], "1");
    let kv = &v["kvs"][0];
    assert_eq!(
        (kv["key"].as_str(), kv["value"].as_str()),
        (Some("Zm9v"), Some("YmFy"))
    );
    assert_eq!(kv["create_revision"], "2");
    assert_eq!(kv["version"], "1");
    assert!(kv.get("lease").is_none(), "{v}");
    let (_, v) = post(&m, "/v3/kv/range", r#"{"key":"bm9uZQ=="}"#).await;
    assert!(
        v.get("kvs").is_none() && v.get("count").is_none() && v.get("more").is_none(),
        "{v}"
    );
    // lowerCamel input names and enum names are accepted.
    post(&m, "/v3/kv/put", r#"{"key":"Zm9vMg==","value":"eA=="}"#).await;
    let (_, v) = post(
        &m,
        "/v3/kv/range",
        r#"{"key":"Zm9v","rangeEnd":"Zm9w","sort_order":"DESCEND","keysOnly":true}"#,
    )
    .await;
    let keys: Vec<&str> = v["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["Zm9vMg==", "Zm9v"]);
    assert!(v["kvs"][0].get("value").is_none(), "{v}");

    let (st, v) = post(
        &m,
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","target":"VALUE","result":"EQUAL","value":"YmFy"}],
            "success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}],
            "failure":[{"request_range":{"key":"Zm9v"}}]}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["succeeded"], true);
    assert_eq!(v["header"]["revision"], "4");
    assert!(v["responses"][0]["response_put"].is_object(), "{v}");
    let (_, v) = post(&m, "/v3/kv/deleterange", r#"{"key":"Zm9v","prev_kv":true}"#).await;
    assert_eq!(v["deleted"], "1");
    assert_eq!(v["prev_kvs"][0]["value"], "YmF6");
}

#[tokio::test]
async fn errors_carry_the_grpc_code_and_etcds_message() {
    let m = Member::start().await;
    // Item 101.
    let (st, v) = post(&m, "/v3/kv/range", r#"{"key":""}"#).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"], "etcdserver: key is not provided");
    assert_eq!(v["message"], "etcdserver: key is not provided");
    assert_eq!(v["code"], 3);
    let (st, v) = post(&m, "/v3/lease/revoke", r#"{"ID":"12345"}"#).await;
    assert_eq!(st, 404, "{v}");
    assert_eq!(v["error"], "etcdserver: requested lease not found");
    assert_eq!(v["code"], 5);
    // grpc-gateway writes the keys in this order; clients that compare bodies see the same text.
    let raw = http_post(&m.endpoint(), "/v3/kv/range", r#"{"key":""}"#).await;
    assert_eq!(
        raw.body.trim_end(),
        r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
    );
}

/// etcd 3.4 serves its gateway under `/v3beta/*` too (tooz with `api_version=v3beta`, old gateway
/// clients); 3.5 dropped the alias, metastore keeps it so that both kinds of client work.
#[tokio::test]
async fn v3beta_is_an_alias_of_v3() {
    let m = Member::start().await;
    let (st, v) = post(&m, "/v3beta/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["header"]["revision"], "2");
    let (st, v) = post(&m, "/v3beta/kv/range", r#"{"key":"Zm9v"}"#).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["kvs"][0]["value"], "YmFy");
    let (st, v) = post(&m, "/v3beta/lease/revoke", r#"{"ID":"12345"}"#).await;
    assert_eq!((st, v["code"].as_i64()), (404, Some(5)), "{v}");
    let mut w = HttpStream::post(
        &m.endpoint(),
        "/v3beta/watch",
        r#"{"create_request":{"key":"Zm9v","start_revision":"2"}}"#,
    )
    .await;
    let created: Value = serde_json::from_str(&w.next_line().await).unwrap();
    assert_eq!(created["result"]["created"], true, "{created}");
    let ev: Value = serde_json::from_str(&w.next_line().await).unwrap();
    assert_eq!(ev["result"]["events"][0]["kv"]["value"], "YmFy", "{ev}");
}

#[tokio::test]
async fn members_status_and_leases_in_json() {
    let m = Member::start().await;
    let (st, v) = post(&m, "/v3/cluster/member/list", "{}").await;
    assert_eq!(st, 200, "{v}");
    let member = &v["members"][0];
    assert!(member["ID"].is_string(), "{v}");
    assert_eq!(member["clientURLs"][0], format!("http://{}", m.endpoint()));
    assert!(
        member["peerURLs"][0]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:"),
        "{v}"
    );
    let (_, s) = post(&m, "/v3/maintenance/status", "{}").await;
    assert_eq!(s["leader"], member["ID"]);
    assert!(s["dbSize"].is_string(), "{s}");

    let (st, g) = post(&m, "/v3/lease/grant", r#"{"TTL":"60","ID":"4660"}"#).await;
    assert_eq!(st, 200, "{g}");
    assert_eq!(
        (g["ID"].as_str(), g["TTL"].as_str()),
        (Some("4660"), Some("60"))
    );
    post(
        &m,
        "/v3/kv/put",
        r#"{"key":"bA==","value":"eA==","lease":"4660"}"#,
    )
    .await;
    let (_, t) = post(
        &m,
        "/v3/kv/lease/timetolive",
        r#"{"ID":"4660","keys":true}"#,
    )
    .await;
    assert_eq!(t["grantedTTL"], "60");
    assert_eq!(t["keys"][0], "bA==");
    let (_, l) = post(&m, "/v3/lease/leases", "{}").await;
    assert_eq!(l["leases"][0]["ID"], "4660");

    // Keepalive: one request, one answer, then the stream ends with the request body.
    let r = http_post(&m.endpoint(), "/v3/lease/keepalive", r#"{"ID":"4660"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.body);
    let k: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        (k["result"]["ID"].as_str(), k["result"]["TTL"].as_str()),
        (Some("4660"), Some("60"))
    );
}

/// Item 100: a watch over the gateway stays open after the request body and streams events.
#[tokio::test]
async fn watch_streams_chunked_json_lines() {
    let m = Member::start().await;
    let mut w = HttpStream::post(
        &m.endpoint(),
        "/v3/watch",
        r#"{"create_request":{"key":"Zm9v"}}"#,
    )
    .await;
    assert_eq!(w.status, 200);
    let created: Value = serde_json::from_str(&w.next_line().await).unwrap();
    assert_eq!(created["result"]["created"], true, "{created}");
    assert_eq!(created["result"]["header"]["revision"], "1");
    post(&m, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#).await;
    post(&m, "/v3/kv/deleterange", r#"{"key":"Zm9v"}"#).await;
    let put: Value = serde_json::from_str(&w.next_line().await).unwrap();
    let ev = &put["result"]["events"][0];
    assert!(
        ev.get("type").is_none(),
        "a PUT event has no type field: {put}"
    );
    assert_eq!(ev["kv"]["value"], "YmFy");
    assert_eq!(ev["kv"]["mod_revision"], "2");
    let del: Value = serde_json::from_str(&w.next_line().await).unwrap();
    let ev = &del["result"]["events"][0];
    assert_eq!(ev["type"], "DELETE");
    assert_eq!(ev["kv"]["mod_revision"], "3");
    assert_eq!(del["result"]["header"]["revision"], "3");
}

/// A value near `--max-request-bytes` fits through the gateway although base64 makes its JSON a
/// third larger (HTTP frameworks' default body limits are smaller).
#[tokio::test]
async fn a_large_value_fits_through_the_gateway() {
    use base64::Engine;
    let m = compat_tests::MemberBuilder::new()
        .args(["--max-request-bytes", "3145728"])
        .start()
        .await;
    let value = vec![b'v'; 2_621_440];
    let b64 = base64::engine::general_purpose::STANDARD.encode(&value);
    let body = format!(r#"{{"key":"Zm9v","value":"{b64}"}}"#);
    assert!(body.len() > 3 << 20, "{}", body.len());
    let (st, v) = post(&m, "/v3/kv/put", &body).await;
    assert_eq!(st, 200, "{v}");
    let mut c = m.client().await;
    let g = c.get("foo", None).await.unwrap();
    assert_eq!(g.kvs()[0].value().len(), value.len());
}

/// Unknown JSON fields are ignored (grpc-gateway v1 does), and Snapshot, not served, answers 501.
#[tokio::test]
async fn unknown_fields_are_ignored_and_unserved_methods_answer_501() {
    let m = Member::start().await;
    let (st, v) = post(
        &m,
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmFy","no_such_field":1}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["header"]["revision"], "2");
    if compat_tests::is_etcd() {
        return;
    }
    let (st, v) = post(&m, "/v3/maintenance/snapshot", "{}").await;
    assert_eq!(st, 501, "{v}");
    assert_eq!(v["code"], 12);
}

/// `/v3/election/observe` streams the election's leader as JSON lines: the current one at once,
/// then each proclaimed value.
#[tokio::test]
async fn election_observe_streams_leaders() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let lease = c.lease_grant(60, None).await.unwrap().id();
    let won = c.campaign("el", "v1", lease).await.unwrap();
    let leader = won.leader().unwrap().clone();
    // "el" and "v1"/"v2" in base64.
    let mut o = HttpStream::post(&m.endpoint(), "/v3/election/observe", r#"{"name":"ZWw="}"#).await;
    assert_eq!(o.status, 200);
    let first: Value = serde_json::from_str(&o.next_line().await).unwrap();
    assert_eq!(first["result"]["kv"]["value"], "djE=", "{first}");
    c.proclaim(
        "v2",
        Some(etcd_client::ProclaimOptions::new().with_leader(leader)),
    )
    .await
    .unwrap();
    let next: Value = serde_json::from_str(&o.next_line().await).unwrap();
    assert_eq!(next["result"]["kv"]["value"], "djI=", "{next}");
}

/// A request that is not valid JSON ends the reading of the body, not the watch: the watch created
/// before it keeps streaming events (etcd 3.4's gateway does the same).
#[tokio::test]
async fn bad_json_in_a_watch_body_stops_reading_but_not_the_watch() {
    let m = Member::start().await;
    let mut w = HttpStream::post(
        &m.endpoint(),
        "/v3/watch",
        r#"{"create_request":{"key":"Zm9v"}}{bad"#,
    )
    .await;
    let created: Value = serde_json::from_str(&w.next_line().await).unwrap();
    assert_eq!(created["result"]["created"], true, "{created}");
    post(&m, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#).await;
    let put: Value = serde_json::from_str(&w.next_line().await).unwrap();
    assert_eq!(put["result"]["events"][0]["kv"]["value"], "YmFy", "{put}");
}
