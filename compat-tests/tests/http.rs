//! The plain-HTTP endpoints on the client port: `/health`, `/version`, `/metrics`, `/livez`, `/readyz`,
//! and 404 elsewhere (checklist item 103), spoken as HTTP/1.1 the way curl and probes do.

use compat_tests::http::{http_get, HttpResponse};
use compat_tests::{is_etcd, Member};
use etcd_client::{AlarmAction, AlarmOptions, AlarmType};

fn json(r: &HttpResponse) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {:?}", r.body))
}

#[tokio::test]
async fn health_is_true_with_a_leader_and_false_with_an_alarm() {
    let m = Member::start().await;
    let r = http_get(&m.endpoint(), "/health", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json(&r)["health"], "true");
    let r = http_get(&m.endpoint(), "/health?serializable=true", "").await;
    assert_eq!((r.status, json(&r)["health"].clone()), (200, "true".into()));

    let mut c = m.client().await;
    let id = c.status().await.unwrap().header().unwrap().member_id();
    let mut o = AlarmOptions::new();
    o.with_member(id);
    c.alarm(AlarmAction::Activate, AlarmType::Nospace, Some(o.clone()))
        .await
        .unwrap();
    let r = http_get(&m.endpoint(), "/health", "").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(json(&r)["health"], "false");
    if !is_etcd() {
        // etcd 3.5's reason and its `exclude` parameter (3.4 has neither).
        assert_eq!(json(&r)["reason"], "ALARM NOSPACE");
        let r = http_get(&m.endpoint(), "/health?exclude=NOSPACE", "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, r#"{"health":"true","reason":""}"#);
    }
    c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(o))
        .await
        .unwrap();
    let r = http_get(&m.endpoint(), "/health", "").await;
    assert_eq!((r.status, json(&r)["health"].clone()), (200, "true".into()));
}

#[tokio::test]
async fn version_names_server_and_cluster_versions() {
    let m = Member::start().await;
    let r = http_get(&m.endpoint(), "/version", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json(&r);
    let server = v["etcdserver"].as_str().expect("etcdserver");
    let parts: Vec<&str> = server.split('.').collect();
    assert_eq!(parts.len(), 3, "{server}");
    assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()), "{server}");
    assert_eq!(v["etcdcluster"], format!("{}.{}.0", parts[0], parts[1]));
}

#[tokio::test]
async fn metrics_carry_leader_and_revision_gauges() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("a", "1", None).await.unwrap();
    c.put("a", "2", None).await.unwrap();
    let r = http_get(&m.endpoint(), "/metrics", "").await;
    assert_eq!(r.status, 200);
    assert!(r.head.contains("content-type: text/plain"), "{}", r.head);
    let lines: Vec<&str> = r.body.lines().collect();
    for want in [
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "etcd_debugging_mvcc_current_revision 3",
        "etcd_server_leader_changes_seen_total 1",
        "etcd_server_proposals_pending 0",
        "# TYPE etcd_mvcc_db_total_size_in_bytes gauge",
    ] {
        assert!(lines.contains(&want), "missing {want:?}");
    }
    // Two puts were synced to the raft log and written by apply: both histograms counted them.
    for h in [
        "etcd_disk_wal_fsync_duration_seconds",
        "etcd_disk_backend_commit_duration_seconds",
    ] {
        let count = lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{h}_count ")))
            .unwrap_or_else(|| panic!("no {h}_count"));
        assert!(count.parse::<u64>().unwrap() >= 2, "{h}_count {count}");
        let inf = format!("{h}_bucket{{le=\"+Inf\"}} {count}");
        assert!(lines.contains(&inf.as_str()), "missing {inf:?}");
    }
}

/// The labelled families etcd's dashboards use: MVCC's operation counters and live keys, and the
/// gRPC server's started/handled counts per method and status code (a watch whose client went away
/// counts as Canceled, as etcd counts it).
#[tokio::test]
async fn metrics_count_operations_and_grpc_calls_by_method_and_code() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("a", "1", None).await.unwrap();
    c.put("a", "2", None).await.unwrap();
    c.put("b", "1", None).await.unwrap();
    c.delete("b", None).await.unwrap();
    let empty = c.put("", "v", None).await.unwrap_err();
    assert!(empty.to_string().contains("key is not provided"), "{empty}");
    let watch = c.watch("a", None).await.unwrap();
    drop(watch);
    let kv = |method: &str, code: &str, n: u64| {
        format!(
            "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"{method}\",\
             grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}} {n}"
        )
    };
    let want = [
        "etcd_mvcc_put_total 3".to_string(),
        "etcd_mvcc_delete_total 1".to_string(),
        "etcd_debugging_mvcc_keys_total 1".to_string(),
        kv("Put", "OK", 3),
        kv("Put", "InvalidArgument", 1),
        kv("DeleteRange", "OK", 1),
        "grpc_server_started_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",\
         grpc_type=\"unary\"} 4"
            .to_string(),
        "grpc_server_handled_total{grpc_code=\"Canceled\",grpc_method=\"Watch\",\
         grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 1"
            .to_string(),
    ];
    let endpoint = m.endpoint();
    compat_tests::eventually(10, "the watch to count as Canceled", || {
        let (endpoint, want) = (endpoint.clone(), want.clone());
        async move {
            let r = http_get(&endpoint, "/metrics", "").await;
            let lines: Vec<&str> = r.body.lines().collect();
            want.iter()
                .all(|w| lines.contains(&w.as_str()))
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn livez_and_readyz_answer_ok() {
    if compat_tests::skip_on_etcd("etcd 3.4 has no /livez or /readyz") {
        return;
    }
    let m = Member::start().await;
    for path in ["/livez", "/readyz"] {
        let r = http_get(&m.endpoint(), path, "").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{path}");
    }
    // A CORRUPT alarm makes the member not ready (it is still live).
    let mut c = m.client().await;
    let id = c.status().await.unwrap().header().unwrap().member_id();
    let mut o = AlarmOptions::new();
    o.with_member(id);
    c.alarm(AlarmAction::Activate, AlarmType::Corrupt, Some(o))
        .await
        .unwrap();
    let r = http_get(&m.endpoint(), "/readyz", "").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.starts_with("[-]data_corruption failed"),
        "{}",
        r.body
    );
    let r = http_get(&m.endpoint(), "/livez", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn other_paths_are_not_found_and_unknown_grpc_methods_unimplemented() {
    let m = Member::start().await;
    let r = http_get(&m.endpoint(), "/no/such/path", "").await;
    assert_eq!((r.status, r.body.as_str()), (404, "404 page not found\n"));
    if !is_etcd() {
        // A gRPC request to a service nobody serves (etcd's grpc-go does not take HTTP/1.1).
        let r = http_get(
            &m.endpoint(),
            "/no.Such/Method",
            "Content-Type: application/grpc\r\n",
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.head.contains("grpc-status: 12"), "{}", r.head);
    }
}

/// `--listen-metrics-urls`: /metrics and /health also on a plain-HTTP port of their own (Kubernetes
/// probes use it), without the gateway; `--enable-grpc-gateway=false` takes the gateway off the
/// client port.
#[tokio::test]
async fn metrics_urls_and_the_gateway_switch() {
    let port = compat_tests::ports::free_ports(1)[0];
    let metrics = format!("127.0.0.1:{port}");
    let m = compat_tests::MemberBuilder::new()
        .args([
            "--listen-metrics-urls".to_string(),
            format!("http://{metrics}"),
            "--enable-grpc-gateway=false".to_string(),
        ])
        .start()
        .await;
    let r = http_get(&metrics, "/metrics", "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.lines().any(|l| l == "etcd_server_has_leader 1"),
        "{}",
        r.body
    );
    let r = http_get(&metrics, "/health", "").await;
    assert_eq!((r.status, json(&r)["health"].clone()), (200, "true".into()));
    let r = compat_tests::http::http_post(&metrics, "/v3/kv/range", r#"{"key":"Zm9v"}"#).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = compat_tests::http::http_post(&m.endpoint(), "/v3/kv/range", r#"{"key":"Zm9v"}"#).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = http_get(&m.endpoint(), "/health", "").await;
    assert_eq!(r.status, 200);
}
