//! gRPC server metrics under the names etcd exports them (go-grpc-prometheus):
//! `grpc_server_started_total{grpc_type,grpc_service,grpc_method}` and
//! `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`.
//!
//! A tower layer in front of the client router: a request whose path is `/<service>/<method>` and whose
//! content type is gRPC counts as started when it arrives and as handled once its status is known: the
//! `grpc-status` of a trailers-only answer, of the trailers at the end of the body, or `Canceled` when
//! the client went away first (the body was dropped unfinished), which is what etcd counts for a watch
//! whose client hung up. Other requests (gateway, health, metrics) pass untouched.
//!
//! Invariant: every started call is counted handled at most once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http_body::Frame;
use prometheus::{IntCounterVec, Opts};
use tower_service::Service;

/// The two families, shared by every client listener of a member.
pub struct GrpcMetrics {
    started: IntCounterVec,
    handled: IntCounterVec,
}

impl GrpcMetrics {
    /// Creates the families and registers them in `m`.
    pub fn new(m: &crate::metrics::Metrics) -> Arc<GrpcMetrics> {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| panic!("metric {name}: {e}"))
        };
        let g = GrpcMetrics {
            started: vec(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                &["grpc_method", "grpc_service", "grpc_type"],
            ),
            handled: vec(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &["grpc_code", "grpc_method", "grpc_service", "grpc_type"],
            ),
        };
        m.register(&g.started);
        m.register(&g.handled);
        Arc::new(g)
    }
}

/// The streaming kind of an etcd method, as go-grpc-prometheus labels it.
fn grpc_type(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot") | ("v3electionpb.Election", "Observe") => {
            "server_stream"
        }
        ("grpc.health.v1.Health", "Watch") => "server_stream",
        _ => "unary",
    }
}

/// Go's name of a gRPC status code.
fn code_name(code: &[u8]) -> &'static str {
    match code {
        b"0" => "OK",
        b"1" => "Canceled",
        b"2" => "Unknown",
        b"3" => "InvalidArgument",
        b"4" => "DeadlineExceeded",
        b"5" => "NotFound",
        b"6" => "AlreadyExists",
        b"7" => "PermissionDenied",
        b"8" => "ResourceExhausted",
        b"9" => "FailedPrecondition",
        b"10" => "Aborted",
        b"11" => "OutOfRange",
        b"12" => "Unimplemented",
        b"13" => "Internal",
        b"14" => "Unavailable",
        b"15" => "DataLoss",
        b"16" => "Unauthenticated",
        _ => "Unknown",
    }
}

/// Counts gRPC calls into `GrpcMetrics`; `None` (peer and metrics listeners) counts nothing.
#[derive(Clone, Default)]
pub struct GrpcMetricsLayer(pub Option<Arc<GrpcMetrics>>);

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Option<Arc<GrpcMetrics>>,
}

/// One call being counted: its labels, until it is handled.
struct Call {
    metrics: Arc<GrpcMetrics>,
    service: String,
    method: String,
    kind: &'static str,
}

impl Call {
    fn handled(self, code: &str) {
        self.metrics
            .handled
            .with_label_values(&[code, &self.method, &self.service, self.kind])
            .inc();
    }
}

fn start<B>(metrics: &Option<Arc<GrpcMetrics>>, req: &http::Request<B>) -> Option<Call> {
    let metrics = metrics.as_ref()?;
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !grpc {
        return None;
    }
    let (service, method) = req.uri().path().strip_prefix('/')?.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    let kind = grpc_type(service, method);
    metrics
        .started
        .with_label_values(&[method, service, kind])
        .inc();
    Some(Call {
        metrics: metrics.clone(),
        service: service.to_string(),
        method: method.to_string(),
        kind,
    })
}

impl<S, B> Service<http::Request<B>> for Counted<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = start(&self.metrics, &req);
        ResponseFuture {
            inner: self.inner.call(req),
            call,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        let Some(call) = this.call.take() else {
            return Poll::Ready(res);
        };
        let Ok(resp) = res else {
            call.handled("Unknown");
            return Poll::Ready(res);
        };
        // A trailers-only answer (errors, mostly) carries its status in the headers.
        if let Some(code) = resp.headers().get("grpc-status") {
            call.handled(code_name(code.as_bytes()));
            return Poll::Ready(Ok(resp));
        }
        let (parts, body) = resp.into_parts();
        let body = tonic::body::Body::new(CountedBody {
            inner: body,
            call: Some(call),
        });
        Poll::Ready(Ok(http::Response::from_parts(parts, body)))
    }
}

/// A response body that counts its call handled when its trailers pass (or it is dropped unfinished).
struct CountedBody {
    inner: tonic::body::Body,
    call: Option<Call>,
}

impl http_body::Body for CountedBody {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(code) = f.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    if let Some(call) = self.call.take() {
                        call.handled(code_name(code.as_bytes()));
                    }
                }
            }
            Some(Err(_)) | None => {
                if let Some(call) = self.call.take() {
                    call.handled("Unknown");
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.handled("Canceled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_go_grpc_prometheus() {
        assert_eq!(grpc_type("etcdserverpb.Watch", "Watch"), "bidi_stream");
        assert_eq!(
            grpc_type("etcdserverpb.Lease", "LeaseKeepAlive"),
            "bidi_stream"
        );
        assert_eq!(
            grpc_type("etcdserverpb.Maintenance", "Snapshot"),
            "server_stream"
        );
        assert_eq!(grpc_type("etcdserverpb.KV", "Range"), "unary");
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"1"), "Canceled");
        assert_eq!(code_name(b"12"), "Unimplemented");
        assert_eq!(code_name(b"99"), "Unknown");
    }

    #[test]
    fn only_grpc_paths_count() {
        let m = crate::metrics::Metrics::new();
        let g = Some(GrpcMetrics::new(&m));
        let req = |path: &str, ct: &str| {
            http::Request::builder()
                .uri(path)
                .header("content-type", ct)
                .body(())
                .unwrap()
        };
        assert!(start(&g, &req("/etcdserverpb.KV/Range", "application/grpc")).is_some());
        assert!(start(&g, &req("/v3/kv/range", "application/json")).is_none());
        assert!(start(&g, &req("/metrics", "application/grpc")).is_none());
        assert!(start(&None, &req("/etcdserverpb.KV/Range", "application/grpc")).is_none());
        let call = start(&g, &req("/etcdserverpb.KV/Put", "application/grpc+proto")).unwrap();
        call.handled("OK");
        let out = m.render();
        for want in [
            r#"grpc_server_started_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#,
            r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#,
        ] {
            assert!(out.lines().any(|l| l == want), "{want} in {out}");
        }
    }
}
