//! etcd's gRPC gateway: `POST /v3/<service>/<method>` with the request message as proto3 JSON in the
//! body, answered with the response message as proto3 JSON (proto field names, int64 as strings,
//! bytes as base64, default values left out), on the client port next to gRPC.
//!
//! The gateway calls the same service implementations as gRPC, so semantics and errors are the same;
//! an error is answered with grpc-gateway v1's body `{"error":..,"message":..,"code":..}` and the HTTP
//! status grpc-gateway v1 maps its code to (as etcd 3.4 and 3.5 do); a body over the size limit
//! gets ResourceExhausted the same way. Unknown JSON fields are ignored, as grpc-gateway v1 does. Paths are etcd's (§1.1 of the
//! API reference), including the `/v3/kv/lease/*` aliases; `/v3/maintenance/hash` is Hash (3.4/3.5
//! route HashKV's JSON there too) and `/v3/maintenance/hashkv` is HashKV. The streaming machinery is in
//! `gateway_stream`.

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Code, Status};

use super::{cluster, gateway_stream, kv, lease, lock, maintenance, NotServed};
use crate::error::Error;
use crate::proto::etcdserverpb::{
    auth_server::Auth, cluster_server::Cluster, kv_server::Kv, lease_server::Lease,
    maintenance_server::Maintenance,
};
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3lockpb::lock_server::Lock;
use crate::server::EtcdServer;

/// The HTTP status grpc-gateway v1 answers for a gRPC code.
pub(super) fn http_status_of(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A gRPC error as grpc-gateway v1 answers it.
pub(super) fn error_response(s: &Status) -> Response {
    // grpc-gateway writes its error struct's fields in declaration order; serde_json's map would sort
    // them, so the body is put together here. A JSON string of the message is always encodable.
    let msg = serde_json::to_string(s.message()).unwrap_or_else(|_| "\"\"".into());
    let body = format!(
        "{{\"error\":{msg},\"message\":{msg},\"code\":{}}}",
        s.code() as i32
    );
    (
        http_status_of(s.code()),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The request message of a one-message body: the body the HTTP layer accepted (an over-limit one
/// is ResourceExhausted) decoded from JSON (an empty body is the default message, as in the
/// gateway).
pub(super) fn request_of<T: DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Status> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::BodyTooLarge
        } else {
            Error::InvalidJson(r.body_text())
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| Error::InvalidJson(e.to_string()).into())
}

/// A unary method: decodes the body, calls the service method and encodes its answer.
async fn unary<Req, Resp, Fut>(
    body: Result<Bytes, BytesRejection>,
    call: impl FnOnce(tonic::Request<Req>) -> Fut,
) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let req = match request_of::<Req>(body) {
        Ok(r) => r,
        Err(s) => return error_response(&s),
    };
    match call(tonic::Request::new(req)).await {
        Ok(resp) => match serde_json::to_string(resp.get_ref()) {
            Ok(json) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                json,
            )
                .into_response(),
            Err(e) => error_response(&Error::Internal(e.to_string()).into()),
        },
        Err(s) => error_response(&s),
    }
}

/// At most `--max-concurrent-streams` gateway calls in flight per client URL, a streaming call
/// holding its slot until its response ends: etcd's gateway reaches the server over one gRPC
/// connection, so its calls queue behind that connection's stream limit (etcd's e2e
/// `TestV3Curl_MaxStreams_*` tests rely on it). With the default (2^32-1) nothing is counted.
#[derive(Clone)]
pub(super) struct StreamLimit(Option<Arc<tokio::sync::Semaphore>>);

impl StreamLimit {
    pub(super) fn new(max_concurrent_streams: u32) -> StreamLimit {
        let n = max_concurrent_streams as usize;
        StreamLimit(
            (n < tokio::sync::Semaphore::MAX_PERMITS && max_concurrent_streams < u32::MAX)
                .then(|| Arc::new(tokio::sync::Semaphore::new(n))),
        )
    }
}

/// The middleware of [`StreamLimit`]: waits for a slot, and gives it back when the response body
/// is done (or dropped).
pub(super) async fn hold_stream_slot(
    axum::extract::State(limit): axum::extract::State<StreamLimit>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(sem) = limit.0 else {
        return next.run(req).await;
    };
    let Ok(slot) = sem.acquire_owned().await else {
        return error_response(&Error::Stopped.into());
    };
    let resp = next.run(req).await;
    resp.map(|body| {
        use futures::StreamExt;
        axum::body::Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &slot;
            chunk
        }))
    })
}

/// `/v3/x` as etcd 3.4's gateway also serves it: `/v3beta/x` (3.5 dropped the alias; tooz with
/// `api_version=v3beta` and old gateway clients still use it).
pub(super) fn beta_alias(path: &str) -> String {
    path.replacen("/v3/", "/v3beta/", 1)
}

/// Adds `POST <path>` and its `/v3beta` alias to `$router`: the body goes to `$svc.$method` through `$via` (`unary`, or
/// `gateway_stream::server_stream` for a server-streaming method).
macro_rules! route {
    ($router:ident, $limit:expr, $path:expr, $svc:expr, $method:ident) => {
        route!($router, $limit, $path, $svc, $method, unary)
    };
    ($router:ident, $limit:expr, $path:expr, $svc:expr, $method:ident, $via:path) => {{
        let svc = $svc.clone();
        let handler = post(move |body: Result<Bytes, BytesRejection>| {
            let svc = svc.clone();
            async move { $via(body, |r| async move { svc.$method(r).await }).await }
        })
        .layer(axum::extract::DefaultBodyLimit::max($limit.0))
        .layer(axum::middleware::from_fn_with_state(
            $limit.1.clone(),
            hold_stream_slot,
        ));
        $router = $router
            .route(&beta_alias($path), handler.clone())
            .route($path, handler);
    }};
}

/// Adds the gateway's unary and server-streaming paths to `router` (the bidirectional ones are in
/// `gateway_stream`).
pub fn add_routes(router: &mut axum::Router, server: Arc<EtcdServer>, streams: StreamLimit) {
    let kv = Arc::new(kv::KvService {
        server: server.clone(),
    });
    let lease = Arc::new(lease::LeaseService::new(server.clone()));
    let cluster = Arc::new(cluster::ClusterService {
        server: server.clone(),
    });
    let maintenance = Arc::new(maintenance::MaintenanceService {
        server: server.clone(),
    });
    let lock = Arc::new(lock::LockService {
        server: server.clone(),
    });
    let limit = (body_limit(server.cfg().max_recv_bytes()), streams);
    let election = Arc::new(super::election::ElectionService { server });
    let auth = Arc::new(NotServed);

    let mut r = std::mem::take(router);
    route!(r, limit, "/v3/kv/range", kv, range);
    route!(r, limit, "/v3/kv/put", kv, put);
    route!(r, limit, "/v3/kv/deleterange", kv, delete_range);
    route!(r, limit, "/v3/kv/txn", kv, txn);
    route!(r, limit, "/v3/kv/compaction", kv, compact);

    route!(r, limit, "/v3/lease/grant", lease, lease_grant);
    route!(r, limit, "/v3/lease/revoke", lease, lease_revoke);
    route!(r, limit, "/v3/kv/lease/revoke", lease, lease_revoke);
    route!(r, limit, "/v3/lease/timetolive", lease, lease_time_to_live);
    route!(
        r,
        limit,
        "/v3/kv/lease/timetolive",
        lease,
        lease_time_to_live
    );
    route!(r, limit, "/v3/lease/leases", lease, lease_leases);
    route!(r, limit, "/v3/kv/lease/leases", lease, lease_leases);

    route!(r, limit, "/v3/cluster/member/add", cluster, member_add);
    route!(
        r,
        limit,
        "/v3/cluster/member/remove",
        cluster,
        member_remove
    );
    route!(
        r,
        limit,
        "/v3/cluster/member/update",
        cluster,
        member_update
    );
    route!(r, limit, "/v3/cluster/member/list", cluster, member_list);
    route!(
        r,
        limit,
        "/v3/cluster/member/promote",
        cluster,
        member_promote
    );

    route!(r, limit, "/v3/maintenance/alarm", maintenance, alarm);
    route!(r, limit, "/v3/maintenance/status", maintenance, status);
    route!(
        r,
        limit,
        "/v3/maintenance/defragment",
        maintenance,
        defragment
    );
    route!(r, limit, "/v3/maintenance/hash", maintenance, hash);
    route!(r, limit, "/v3/maintenance/hashkv", maintenance, hash_kv);
    route!(
        r,
        limit,
        "/v3/maintenance/transfer-leadership",
        maintenance,
        move_leader
    );
    route!(
        r,
        limit,
        "/v3/maintenance/downgrade",
        maintenance,
        downgrade
    );

    route!(r, limit, "/v3/auth/enable", auth, auth_enable);
    route!(r, limit, "/v3/auth/disable", auth, auth_disable);
    route!(r, limit, "/v3/auth/status", auth, auth_status);
    route!(r, limit, "/v3/auth/authenticate", auth, authenticate);
    route!(r, limit, "/v3/auth/user/add", auth, user_add);
    route!(r, limit, "/v3/auth/user/get", auth, user_get);
    route!(r, limit, "/v3/auth/user/list", auth, user_list);
    route!(r, limit, "/v3/auth/user/delete", auth, user_delete);
    route!(
        r,
        limit,
        "/v3/auth/user/changepw",
        auth,
        user_change_password
    );
    route!(r, limit, "/v3/auth/user/grant", auth, user_grant_role);
    route!(r, limit, "/v3/auth/user/revoke", auth, user_revoke_role);
    route!(r, limit, "/v3/auth/role/add", auth, role_add);
    route!(r, limit, "/v3/auth/role/get", auth, role_get);
    route!(r, limit, "/v3/auth/role/list", auth, role_list);
    route!(r, limit, "/v3/auth/role/delete", auth, role_delete);
    route!(r, limit, "/v3/auth/role/grant", auth, role_grant_permission);
    route!(
        r,
        limit,
        "/v3/auth/role/revoke",
        auth,
        role_revoke_permission
    );

    route!(r, limit, "/v3/lock/lock", lock, lock);
    route!(r, limit, "/v3/lock/unlock", lock, unlock);

    route!(r, limit, "/v3/election/campaign", election, campaign);
    route!(r, limit, "/v3/election/proclaim", election, proclaim);
    route!(r, limit, "/v3/election/leader", election, leader);
    route!(r, limit, "/v3/election/resign", election, resign);
    route!(
        r,
        limit,
        "/v3/election/observe",
        election,
        observe,
        gateway_stream::server_stream
    );
    route!(
        r,
        limit,
        "/v3/maintenance/snapshot",
        maintenance,
        snapshot,
        gateway_stream::server_stream
    );
    *router = r;
}

/// The largest JSON request body: a request as large as gRPC takes, with base64 making bytes 4/3
/// larger, plus room for the field names.
pub(super) fn body_limit(max_recv_bytes: usize) -> usize {
    max_recv_bytes * 3 / 2 + 64 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
    use crate::proto::mvccpb::KeyValue;

    #[test]
    fn json_mapping_is_etcds() {
        let resp = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 4,
            }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 3,
                mod_revision: 3,
                version: 1,
                value: b"bar".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"4"},"kvs":[{"key":"Zm9v","create_revision":"3","mod_revision":"3","version":"1","value":"YmFy"}],"count":"1"}"#
        );
        let body = br#"{"key":"Zm9v","rangeEnd":"Zm9w","limit":5,"sort_order":"DESCEND"}"#;
        let r: RangeRequest = request_of(Ok(Bytes::from_static(body))).unwrap();
        assert_eq!(r.key, b"foo");
        assert_eq!(r.range_end, b"fop");
        assert_eq!(r.limit, 5);
        assert_eq!(r.sort_order, 2);
        assert_eq!(
            request_of::<RangeRequest>(Ok(Bytes::from_static(b" "))).unwrap(),
            RangeRequest::default()
        );
        let bad = request_of::<RangeRequest>(Ok(Bytes::from_static(b"{"))).unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
    }
}
