//! The plain-HTTP endpoints etcd serves on its client port next to gRPC: `/health`, `/livez`,
//! `/readyz`, `/version` and `/metrics`. They answer HTTP/1.1 (curl, load balancers, Kubernetes
//! probes, Prometheus) as well as HTTP/2, and never change state. Any other path answers gRPC's
//! Unimplemented to a gRPC request and 404 to anything else.
//!
//! `/health` follows etcd 3.5: unhealthy (503) when an alarm is active (`?exclude=NOSPACE` ignores
//! that one), when there is no leader (unless `?serializable=true`), or when a read fails (a
//! linearizable one unless `?serializable=true`); the body is `{"health":"true|false","reason":"..."}`.
//! `/livez` checks that a local read is served, `/readyz` also that no CORRUPT alarm is active, that
//! there is a leader and that a linearizable read completes; both answer `ok` or 503 with the failed check. `/metrics` is
//! Prometheus text with a small set of etcd's metrics (leader, leader changes, pending proposals,
//! sizes, quota, revision, raft indexes, versions, WAL fsync and backend commit durations); the rest of etcd's metrics are not exported yet.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::RawQuery;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::alarm::alarm_name;
use crate::server::EtcdServer;

/// How long a health check's read may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Adds the endpoints to `router` (the client port's router, whose other routes are gRPC services).
pub fn add_routes(router: &mut axum::Router, server: Arc<EtcdServer>) {
    let r = std::mem::take(router);
    let (s1, s2, s3, s4, s5) = (
        server.clone(),
        server.clone(),
        server.clone(),
        server.clone(),
        server,
    );
    *router = r
        .route(
            "/version",
            get(move || {
                let s = s1.clone();
                async move { version(&s) }
            }),
        )
        .route(
            "/health",
            get(move |RawQuery(q): RawQuery| {
                let s = s2.clone();
                async move { health(&s, q.as_deref().unwrap_or("")).await }
            }),
        )
        .route(
            "/livez",
            get(move || {
                let s = s3.clone();
                async move { probe(&s, false).await }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let s = s4.clone();
                async move { probe(&s, true).await }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let s = s5.clone();
                async move { metrics(&s).await }
            }),
        )
        .fallback(fallback);
}

/// What tonic's router answers for an unknown gRPC method, and a plain 404 (Go's text, as etcd's
/// HTTP mux answers) to any other request.
async fn fallback(req: axum::extract::Request) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("")
            .into_http::<()>()
            .into_parts();
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// One gauge in Prometheus' text format.
fn gauge(out: &mut String, name: &str, help: &str, labels: &str, value: impl std::fmt::Display) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name}{labels} {value}");
}

/// One counter in Prometheus' text format.
fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

async fn metrics(s: &EtcdServer) -> Response {
    let sizes = s
        .blocking(|db| Ok((db.size_bytes(), db.size_in_use_bytes())))
        .await;
    let Ok((size, in_use)) = sizes else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "size unavailable\n").into_response();
    };
    let st = &s.raft.status;
    let leader = st.leader();
    let v = &s.cfg.etcd_version;
    let cluster = cluster_version(v);
    let mut out = String::new();
    gauge(
        &mut out,
        "etcd_server_has_leader",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        "",
        u8::from(leader != 0),
    );
    gauge(
        &mut out,
        "etcd_server_is_leader",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        "",
        u8::from(leader == s.member_id),
    );
    gauge(
        &mut out,
        "etcd_server_is_learner",
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        "",
        u8::from(st.is_learner()),
    );
    gauge(
        &mut out,
        "etcd_server_id",
        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
        &format!("{{server_id=\"{:x}\"}}", s.member_id),
        1,
    );
    gauge(
        &mut out,
        "etcd_server_version",
        "Which version is running. 1 for 'server_version' label with current version.",
        &format!("{{server_version=\"{v}\"}}"),
        1,
    );
    gauge(
        &mut out,
        "etcd_cluster_version",
        "Which version is running. 1 for 'cluster_version' label with current cluster version",
        &format!("{{cluster_version=\"{cluster}\"}}"),
        1,
    );
    counter(
        &mut out,
        "etcd_server_leader_changes_seen_total",
        "The number of leader changes seen.",
        st.leader_changes.load(std::sync::atomic::Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "etcd_server_proposals_pending",
        "The current number of pending proposals to commit.",
        "",
        s.proposals_pending(),
    );
    gauge(
        &mut out,
        "etcd_server_proposals_committed_total",
        "The total number of consensus proposals committed.",
        "",
        st.commit(),
    );
    gauge(
        &mut out,
        "etcd_server_proposals_applied_total",
        "The total number of consensus proposals applied.",
        "",
        s.applied_index(),
    );
    gauge(
        &mut out,
        "etcd_server_quota_backend_bytes",
        "Current backend storage quota size in bytes.",
        "",
        s.cfg.quota_backend_bytes,
    );
    gauge(
        &mut out,
        "etcd_mvcc_db_total_size_in_bytes",
        "Total size of the underlying database physically allocated in bytes.",
        "",
        size,
    );
    gauge(
        &mut out,
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "Total size of the underlying database logically in use in bytes.",
        "",
        in_use,
    );
    gauge(
        &mut out,
        "etcd_debugging_mvcc_current_revision",
        "The current revision of store.",
        "",
        s.store.current_revision(),
    );
    gauge(
        &mut out,
        "etcd_debugging_mvcc_compact_revision",
        "The revision of the last compaction in store.",
        "",
        s.store.compact_revision(),
    );
    crate::metrics::WAL_FSYNC.render(
        &mut out,
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
    );
    crate::metrics::BACKEND_COMMIT.render(
        &mut out,
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend.",
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The cluster version etcd reports for a server version: its major.minor (every member runs the
/// same binary).
fn cluster_version(server_version: &str) -> String {
    server_version
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

fn version(s: &EtcdServer) -> Response {
    let v = &s.cfg.etcd_version;
    json(
        StatusCode::OK,
        format!(
            r#"{{"etcdserver":"{v}","etcdcluster":"{}.0"}}"#,
            cluster_version(v)
        ),
    )
}

/// The value of `name` in a query string such as `exclude=NOSPACE&serializable=true`.
fn query_values<'a>(q: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    q.split('&').filter_map(move |kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// A read as the health checks make it: linearizable (through ReadIndex) or local.
async fn check_read(s: &EtcdServer, linearizable: bool) -> Result<(), String> {
    let read = async {
        if linearizable {
            s.read_barrier().await?;
        }
        s.read(|v| Ok(v.current)).await
    };
    match tokio::time::timeout(CHECK_TIMEOUT, read).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(crate::error::Error::Timeout.to_string()),
    }
}

async fn health(s: &EtcdServer, query: &str) -> Response {
    let excluded: Vec<&str> = query_values(query, "exclude").collect();
    let serializable = query_values(query, "serializable").any(|v| v == "true");
    let unhealthy = |reason: String| {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"health": "false", "reason": reason}).to_string(),
        )
    };
    for a in s.alarms.get() {
        let name = alarm_name(a.alarm);
        if !excluded.contains(&name.as_str()) {
            return unhealthy(format!("ALARM {name}"));
        }
    }
    if !serializable && s.raft.status.leader() == 0 {
        return unhealthy("RAFT NO LEADER".into());
    }
    if let Err(e) = check_read(s, !serializable).await {
        return unhealthy(format!("RANGE ERROR:{e}"));
    }
    json(StatusCode::OK, r#"{"health":"true","reason":""}"#.into())
}

async fn probe(s: &EtcdServer, ready: bool) -> Response {
    let failed = |check: &str, why: String| {
        let what = if ready { "readyz" } else { "livez" };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("[-]{check} failed: {why}\n{what} check failed\n"),
        )
            .into_response()
    };
    if let Err(e) = check_read(s, false).await {
        return failed("serializable_read", e);
    }
    if ready {
        let corrupt = s
            .alarms
            .get()
            .iter()
            .any(|a| a.alarm == crate::proto::etcdserverpb::AlarmType::Corrupt as i32);
        if corrupt {
            return failed("data_corruption", "alarm activated".into());
        }
        if s.raft.status.leader() == 0 {
            return failed("leader", "no leader".into());
        }
        if let Err(e) = check_read(s, true).await {
            return failed("linearizable_read", e);
        }
    }
    (StatusCode::OK, "ok").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_finds_every_occurrence() {
        let q = "exclude=NOSPACE&serializable=true&exclude=CORRUPT";
        assert_eq!(
            query_values(q, "exclude").collect::<Vec<_>>(),
            ["NOSPACE", "CORRUPT"]
        );
        assert_eq!(
            query_values(q, "serializable").collect::<Vec<_>>(),
            ["true"]
        );
        assert_eq!(query_values("", "exclude").count(), 0);
    }
}
