//! The benchmark's gRPC connection: one HTTP/2 connection driven by hyper directly.
//!
//! tonic's `Channel` puts a buffer task in front of every connection, so each request crosses one
//! more task (and often one more thread) before it reaches HTTP/2; on a small machine where the
//! client shares cores with the server under test that is CPU taken from the server. Here a request
//! goes from the calling task straight into the connection's stream table. Every clone shares the
//! connection; the connection's I/O runs on one spawned task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A cloneable handle to one HTTP/2 connection, usable as a tonic client transport.
#[derive(Clone)]
pub struct H2Conn {
    send: http2::SendRequest<tonic::body::Body>,
    /// `http://host:port`, put in front of each request's path.
    authority: http::uri::Authority,
}

impl H2Conn {
    /// Connects to `addr` (`host:port`) over plain TCP with Nagle's algorithm off.
    pub async fn connect(addr: &str) -> Result<H2Conn, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (send, conn) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))?;
        tokio::spawn(async move {
            // The connection ends when every handle is dropped or the server goes away; either way
            // the requests in flight see the error.
            let _ = conn.await;
        });
        let authority = addr.parse().map_err(|e| format!("endpoint {addr}: {e}"))?;
        Ok(H2Conn { send, authority })
    }
}

type ResponseFuture = Pin<
    Box<dyn Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>> + Send>,
>;

impl tower_service::Service<http::Request<tonic::body::Body>> for H2Conn {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        Box::pin(self.send.send_request(req))
    }
}
