//! The gateway's streaming machinery: `/v3/watch` and `/v3/lease/keepalive` (both directions
//! streamed, routed here), and `server_stream`, through which `gateway` routes the server-streaming
//! methods (`/v3/election/observe`; `/v3/maintenance/snapshot`, which answers Unimplemented like its
//! gRPC method).
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

use axum::extract::rejection::BytesRejection;

use super::gateway::{error_response, request_of};
use super::{lease, watch_service};
use crate::error::Error;
use crate::proto::etcdserverpb::{lease_server::Lease, watch_server::Watch};
use crate::server::EtcdServer;

/// Finds where top-level JSON values end in a growing buffer, scanning each byte once (a client
/// sending a message a byte at a time costs linear time, not a re-parse per byte).
#[derive(Debug, Default)]
struct JsonFramer {
    /// Bytes of the buffer already scanned.
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl JsonFramer {
    /// The end of the first complete top-level object or array in `buf`, if it is there yet; `Err`
    /// when the bytes cannot start or continue one (the caller lets serde word the error).
    fn message_end(&mut self, buf: &[u8]) -> Result<Option<usize>, ()> {
        while self.scanned < buf.len() {
            let b = buf[self.scanned];
            self.scanned += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' if self.depth > 0 => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let end = self.scanned;
                        *self = JsonFramer::default();
                        return Ok(Some(end));
                    }
                }
                _ if self.depth > 0 => {}
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => return Err(()),
            }
        }
        Ok(None)
    }
}

/// The JSON request messages of a body, in order, as they arrive. At a message that is not valid
/// JSON for `T` the sequence just ends (the responses go on), as etcd 3.4's gateway does; a message
/// larger than `limit` bytes ends it with ResourceExhausted.
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
        framer: JsonFramer,
        ended: bool,
        failed: bool,
    }
    let st = St {
        data: body.into_data_stream().boxed(),
        buf: Vec::new(),
        framer: JsonFramer::default(),
        ended: false,
        failed: false,
    };
    let invalid = |bytes: &[u8]| {
        let why = match serde_json::from_slice::<T>(bytes) {
            Err(e) => e.to_string(),
            Ok(_) => "not a JSON object".to_string(),
        };
        tracing::debug!(error = %why, "gateway stream: request is not valid JSON, reading stops");
    };
    futures::stream::unfold(st, move |mut st| async move {
        loop {
            if st.failed {
                return None;
            }
            match st.framer.message_end(&st.buf) {
                Ok(Some(end)) => {
                    let parsed = serde_json::from_slice::<T>(&st.buf[..end]);
                    st.buf.drain(..end);
                    return match parsed {
                        Ok(m) => Some((Ok(m), st)),
                        Err(e) => {
                            tracing::debug!(error = %e, "gateway stream: request is not valid JSON, reading stops");
                            None
                        }
                    };
                }
                Err(()) => {
                    invalid(&st.buf);
                    return None;
                }
                Ok(None) if st.ended => {
                    if !st.buf.iter().all(u8::is_ascii_whitespace) {
                        invalid(&st.buf);
                    }
                    return None;
                }
                Ok(None) => {}
            }
            match st.data.next().await {
                Some(Ok(chunk)) => {
                    st.buf.extend_from_slice(&chunk);
                    if st.buf.len() > limit {
                        st.failed = true;
                        return Some((Err(Error::BodyTooLarge.into()), st));
                    }
                }
                Some(Err(e)) => {
                    st.failed = true;
                    return Some((Err(Error::BodyAborted(e.to_string()).into()), st));
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
                    error_line(&Error::Internal(e.to_string()).into())
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

/// A server-streaming method: one JSON request, the answers as JSON lines.
pub(super) async fn server_stream<Req, Resp, S, Fut>(
    body: Result<Bytes, BytesRejection>,
    call: impl FnOnce(tonic::Request<Req>) -> Fut,
) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let req = match request_of(body) {
        Ok(r) => r,
        Err(s) => return error_response(&s),
    };
    match call(tonic::Request::new(req)).await {
        Ok(resp) => json_lines(resp.into_inner()),
        Err(s) => error_response(&s),
    }
}

/// Adds the streaming gateway paths (and their `/v3beta` aliases) to `router`.
pub fn add_routes(
    router: &mut axum::Router,
    server: Arc<EtcdServer>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    streams: super::gateway::StreamLimit,
) {
    let limit = super::gateway::body_limit(server.cfg().max_recv_bytes());
    let watch = Arc::new(watch_service::WatchService::new(server.clone(), shutdown));
    let lease = Arc::new(lease::LeaseService::new(server));
    let watch = post(move |body: Body| {
        let watch = watch.clone();
        async move { bidi(body, limit, |r| async move { watch.watch(r).await }).await }
    });
    let keepalive = post(move |body: Body| {
        let lease = lease.clone();
        async move {
            bidi(
                body,
                limit,
                |r| async move { lease.lease_keep_alive(r).await },
            )
            .await
        }
    });
    let mut r = std::mem::take(router);
    for (path, handler) in [("/v3/watch", watch), ("/v3/lease/keepalive", keepalive)] {
        let handler = handler.layer(axum::middleware::from_fn_with_state(
            streams.clone(),
            super::gateway::hold_stream_slot,
        ));
        r = r
            .route(&super::gateway::beta_alias(path), handler.clone())
            .route(path, handler);
    }
    *router = r;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split of a body into two chunks finds the same messages, strings with braces,
    /// brackets and escaped quotes included.
    #[test]
    fn the_framer_finds_messages_across_any_split() {
        let body = br#" {"a":"}{\"[","b":[1,{"c":2}]} [3]
{"d":"\\"}x"#;
        for split in 0..=body.len() {
            let mut f = JsonFramer::default();
            let mut buf = body[..split].to_vec();
            let mut ends = Vec::new();
            let mut fed = false;
            loop {
                match f.message_end(&buf) {
                    Ok(Some(end)) => {
                        ends.push(String::from_utf8_lossy(&buf[..end]).trim().to_string());
                        buf.drain(..end);
                    }
                    Ok(None) if !fed => {
                        buf.extend_from_slice(&body[split..]);
                        fed = true;
                    }
                    Ok(None) => panic!("x is not JSON (split {split})"),
                    Err(()) => break,
                }
            }
            assert_eq!(
                ends,
                [r#"{"a":"}{\"[","b":[1,{"c":2}]}"#, "[3]", r#"{"d":"\\"}"#],
                "split {split}"
            );
            assert_eq!(String::from_utf8_lossy(&buf).trim(), "x");
        }
    }
}
