//! Client deadlines: a gRPC request whose `grpc-timeout` runs out before its handler answers gets
//! etcd's answer, `DEADLINE_EXCEEDED` with grpc-go's `context deadline exceeded` (Go, Python and
//! Node clients map that code to their timeout errors).
//!
//! tonic's server runs its own timer on the same header and answers `CANCELLED: Timeout expired`.
//! This layer sits inside it (tonic applies user layers within its timeout layer) and starts its timer
//! after tonic's, with the same duration, so it never fires later; and tonic polls the inner future
//! first, so when both are due the answer is this layer's.
//!
//! Invariants: a request without a valid `grpc-timeout` passes through untouched (no timer, no
//! allocation); the handler's future is dropped when the deadline answer goes out, exactly as
//! tonic's own timeout would drop it.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tower_service::Service;

/// The layer that gives a tonic server etcd's deadline answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadlineLayer;

impl<S> tower_layer::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

/// See [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Deadline<S>
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
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        ResponseFuture {
            inner: self.inner.call(req),
            sleep: timeout.map(tokio::time::sleep),
        }
    }
}

pin_project_lite::pin_project! {
    /// The handler's future raced against the client's deadline.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(r) = this.inner.poll(cx) {
            return Poll::Ready(r);
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
            let status = tonic::Status::deadline_exceeded("context deadline exceeded");
            return Poll::Ready(Ok(status.into_http()));
        }
        Poll::Pending
    }
}

/// A `grpc-timeout` value (gRPC over HTTP/2: at most 8 digits and a unit H, M, S, m, u or n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let unit = v.chars().last()?;
    let digits = &v[..v.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(
            parse_grpc_timeout("99999m"),
            Some(Duration::from_millis(99999))
        );
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "123456789S", "12x", "-1S", "1.5S", "1é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    /// A handler slower than the deadline is answered DEADLINE_EXCEEDED; one without a deadline
    /// is left alone.
    #[tokio::test(start_paused = true)]
    async fn a_slow_handler_gets_deadline_exceeded() {
        let slow = tower_service_fn(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
        });
        let mut svc = tower_layer::Layer::layer(&DeadlineLayer, slow);
        let req = http::Request::builder()
            .header("grpc-timeout", "100m")
            .body(())
            .unwrap();
        let resp = svc.call(req).await.unwrap();
        let status = tonic::Status::from_header_map(resp.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(status.message(), "context deadline exceeded");
        let resp = svc.call(http::Request::new(())).await.unwrap();
        assert!(tonic::Status::from_header_map(resp.headers()).is_none());
    }

    /// A service from a closure, for the test above.
    fn tower_service_fn<F, Fut>(f: F) -> FnService<F>
    where
        F: Fn() -> Fut,
    {
        FnService(f)
    }

    struct FnService<F>(F);

    impl<F, Fut, R> Service<http::Request<R>> for FnService<F>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<http::Response<tonic::body::Body>, std::convert::Infallible>>,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = Fut;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<R>) -> Fut {
            (self.0)()
        }
    }
}
