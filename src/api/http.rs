//! The plain-HTTP endpoints etcd serves on its client port next to gRPC: `/health`, `/livez`,
//! `/readyz`, `/version` and `/metrics`. They answer HTTP/1.1 (curl, load balancers, Kubernetes
//! probes, Prometheus) as well as HTTP/2, and never change state. Any other path answers gRPC's
//! Unimplemented to a gRPC request and 404 to anything else.
//!
//! `/health` follows etcd 3.5: unhealthy (503) when an alarm is active (`?exclude=NOSPACE` ignores
//! that one), when there is no leader (unless `?serializable=true`), or when a read fails (a
//! linearizable one unless `?serializable=true`); the body is `{"health":"true|false","reason":"..."}`
//! (`{"health":"true|false"}` when answering as etcd 3.4, `METASTORE_ETCD_VERSION=3.4.x`).
//! `/livez` checks that a local read is served, `/readyz` also that no CORRUPT alarm is active, that
//! there is a leader and that a linearizable read completes; both answer `ok` or 503 with the failed check. `/metrics` is
//! Prometheus text of the member's registry (`metrics.rs`): a set of etcd's metrics (leader, leader
//! changes, pending proposals, sizes, quota, revisions, raft indexes, versions, WAL fsync and backend
//! commit durations, MVCC put/delete counts and live keys, gRPC started/handled per method and code);
//! the rest of etcd's metrics are not exported yet.

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

async fn metrics(s: &EtcdServer) -> Response {
    let sizes = s
        .blocking(|db| Ok((db.size_bytes(), db.size_in_use_bytes())))
        .await;
    let Ok((size, in_use)) = sizes else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "size unavailable\n").into_response();
    };
    let st = &s.raft().status;
    let leader = st.leader();
    let v = &s.cfg().etcd_version;
    let g = &s.metrics().state;
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    g.has_leader.set(i64::from(leader != 0));
    g.is_leader.set(i64::from(leader == s.member_id()));
    g.is_learner.set(i64::from(st.is_learner()));
    g.server_id
        .with_label_values(&[&format!("{:x}", s.member_id())])
        .set(1);
    g.server_version.with_label_values(&[v.as_str()]).set(1);
    g.cluster_version
        .with_label_values(&[&cluster_version(v)])
        .set(1);
    g.proposals_pending.set(int(s.proposals_pending() as u64));
    g.proposals_committed.set(int(st.commit()));
    g.proposals_applied.set(int(s.applied_index()));
    g.quota_backend_bytes.set(int(s.cfg().quota_backend_bytes));
    g.db_total_size.set(int(size));
    g.db_in_use.set(int(in_use));
    g.current_revision.set(s.store().current_revision());
    g.compact_revision.set(s.store().compact_revision());
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics().render(),
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
    let v = &s.cfg().etcd_version;
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
    // etcd 3.4's body has no reason (3.5 added it); the version we answer as decides.
    let with_reason = !s.cfg().etcd_version.starts_with("3.4.");
    let unhealthy = |reason: String| {
        let body = if with_reason {
            serde_json::json!({"health": "false", "reason": reason})
        } else {
            serde_json::json!({"health": "false"})
        };
        json(StatusCode::SERVICE_UNAVAILABLE, body.to_string())
    };
    for a in s.alarms().get() {
        let name = alarm_name(a.alarm);
        if !excluded.contains(&name.as_str()) {
            return unhealthy(format!("ALARM {name}"));
        }
    }
    if !serializable && s.raft().status.leader() == 0 {
        return unhealthy("RAFT NO LEADER".into());
    }
    if let Err(e) = check_read(s, !serializable).await {
        return unhealthy(format!("RANGE ERROR:{e}"));
    }
    let healthy = if with_reason {
        r#"{"health":"true","reason":""}"#
    } else {
        r#"{"health":"true"}"#
    };
    json(StatusCode::OK, healthy.into())
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
            .alarms()
            .get()
            .iter()
            .any(|a| a.alarm == crate::proto::etcdserverpb::AlarmType::Corrupt as i32);
        if corrupt {
            return failed("data_corruption", "alarm activated".into());
        }
        if s.raft().status.leader() == 0 {
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
