//! The gateway's streaming methods: `/v3/watch` and `/v3/lease/keepalive` (both directions
//! streamed) and `/v3/election/observe` (server stream).
//!
//! As in grpc-gateway v1: the request body is a sequence of JSON request messages (read as they
//! arrive, so a client may keep the body open and send more, e.g. a cancel); the response is
//! chunked, one line per message, each wrapped as `{"result":{...}}`; an error ends the stream with a
//! line `{"error":{"grpc_code":..,"http_code":..,"message":..,"http_status":..}}`. The JSON requests
//! are handed to the gRPC service implementation as a gRPC message stream, so watch and keepalive
//! behave exactly as over gRPC (a watch stays open after the request body ends; keepalive answers
//! what it was sent and ends).

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::codec::Codec;
use tonic::Status;

use super::gateway::{decode, error_response};
use super::{lease, watch_service};
use crate::proto::etcdserverpb::{lease_server::Lease, watch_server::Watch};
use crate::proto::v3electionpb::election_server::Election;
use crate::server::EtcdServer;

/// The JSON request messages of a body, in order, as they arrive. A message that is not valid JSON
/// for `T` ends the sequence with InvalidArgument, one larger than `limit` bytes with
/// ResourceExhausted.
fn json_messages<T>(
    body: Body,
    limit: usize,
) -> impl Stream<Item = Result<T, Status>> + Send + 'static
where
    T: DeserializeOwned + Send + 'static,
{
    struct St {
        data: futures::stream::BoxStream<'static, Result<Bytes, axum::Error>>,
        buf: Vec<u8>,
        ended: bool,
        failed: bool,
    }
    let st = St {
        data: body.into_data_stream().boxed(),
        buf: Vec::new(),
        ended: false,
        failed: false,
    };
    futures::stream::unfold(st, move |mut st| async move {
        loop {
            if st.failed {
                return None;
            }
            // One complete message from the front of the buffer, if there is one.
            let mut it = serde_json::Deserializer::from_slice(&st.buf).into_iter::<T>();
            match it.next() {
                Some(Ok(m)) => {
                    let used = it.byte_offset();
                    st.buf.drain(..used);
                    return Some((Ok(m), st));
                }
                Some(Err(e)) if !e.is_eof() || st.ended => {
                    st.failed = true;
                    return Some((Err(Status::invalid_argument(e.to_string())), st));
                }
                None if st.ended => return None,
                _ => {}
            }
            match st.data.next().await {
                Some(Ok(chunk)) => {
                    st.buf.extend_from_slice(&chunk);
                    if st.buf.len() > limit {
                        st.failed = true;
                        return Some((
                            Err(Status::resource_exhausted("request message too large")),
                            st,
                        ));
                    }
                }
                Some(Err(e)) => {
                    st.failed = true;
                    return Some((Err(Status::cancelled(e.to_string())), st));
                }
                None => st.ended = true,
            }
        }
    })
}

/// A stream of messages as the body of a gRPC request (length-prefixed frames), decoded again by
/// tonic into the `Streaming` the service implementations read.
fn grpc_streaming<Req>(
    messages: impl Stream<Item = Result<Req, Status>> + Send + 'static,
) -> tonic::Streaming<Req>
where
    Req: prost::Message + Default + Send + 'static,
{
    let frames = messages.map(|m| {
        m.map(|m| {
            let len = m.encoded_len();
            let mut b = Vec::with_capacity(5 + len);
            b.push(0);
            b.extend_from_slice(&(len as u32).to_be_bytes());
            m.encode_raw(&mut b);
            http_body::Frame::data(Bytes::from(b))
        })
    });
    let body = tonic::body::Body::new(http_body_util::StreamBody::new(frames));
    let decoder = tonic_prost::ProstCodec::<(), Req>::default().decoder();
    tonic::Streaming::new_request(decoder, body, None, None)
}

/// The HTTP status text grpc-gateway puts in a stream's error line.
fn error_line(s: &Status) -> Bytes {
    let http = super::gateway::http_status_of(s.code());
    let line = serde_json::json!({
        "error": {
            "grpc_code": s.code() as i32,
            "http_code": http.as_u16(),
            "message": s.message(),
            "http_status": http.canonical_reason().unwrap_or(""),
        }
    });
    Bytes::from(format!("{line}\n"))
}

/// A response stream as chunked JSON lines.
fn json_lines<Resp, S>(stream: S) -> Response
where
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
{
    let lines = stream.scan(false, |ended, item| {
        if *ended {
            return futures::future::ready(None);
        }
        let line = match item {
            Ok(m) => match serde_json::to_string(&m) {
                Ok(json) => Bytes::from(format!("{{\"result\":{json}}}\n")),
                Err(e) => {
                    *ended = true;
                    error_line(&Status::internal(e.to_string()))
                }
            },
            Err(s) => {
                *ended = true;
                error_line(&s)
            }
        };
        futures::future::ready(Some(Ok::<_, std::convert::Infallible>(line)))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}

async fn bidi<Req, Resp, S, Fut>(
    body: Body,
    limit: usize,
    call: impl FnOnce(tonic::Request<tonic::Streaming<Req>>) -> Fut,
) -> Response
where
    Req: DeserializeOwned + prost::Message + Default + Send + 'static,
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let inbound = grpc_streaming(json_messages::<Req>(body, limit));
    match call(tonic::Request::new(inbound)).await {
        Ok(resp) => json_lines(resp.into_inner()),
        Err(s) => error_response(&s),
    }
}

/// Adds the streaming gateway paths to `router`.
pub fn add_routes(
    router: &mut axum::Router,
    server: Arc<EtcdServer>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let limit = super::gateway::body_limit(server.cfg.max_recv_bytes());
    let watch = Arc::new(watch_service::WatchService::new(server.clone(), shutdown));
    let lease = Arc::new(lease::LeaseService::new(server.clone()));
    let election = Arc::new(super::election::ElectionService { server });
    let r = std::mem::take(router);
    *router = r
        .route(
            "/v3/watch",
            post(move |body: Body| {
                let watch = watch.clone();
                async move { bidi(body, limit, |r| async move { watch.watch(r).await }).await }
            }),
        )
        .route(
            "/v3/lease/keepalive",
            post(move |body: Body| {
                let lease = lease.clone();
                async move {
                    bidi(
                        body,
                        limit,
                        |r| async move { lease.lease_keep_alive(r).await },
                    )
                    .await
                }
            }),
        )
        .route(
            "/v3/election/observe",
            post(move |body: Bytes| {
                let election = election.clone();
                async move {
                    let req = match decode(&body) {
                        Ok(r) => r,
                        Err(s) => return error_response(&s),
                    };
                    match election.observe(tonic::Request::new(req)).await {
                        Ok(resp) => json_lines(resp.into_inner()),
                        Err(s) => error_response(&s),
                    }
                }
            })
            .layer(axum::extract::DefaultBodyLimit::max(limit)),
        );
}
