//! The listeners of the client, peer and metrics URLs and the connections they hand to tonic:
//! binding (TCP, or a unix socket for `unix://`), Nagle off on every TCP connection, and the TLS
//! handshake for `https://` URLs.
//!
//! Invariants: a slow or failing TLS handshake never holds up the accept loop (each runs in its own
//! task, bounded in time); a refused handshake is logged with the remote address and never reaches
//! the router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;

use crate::error::{Error, Result};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The accepted connections of `l`, with Nagle's algorithm off: tonic does not apply its own
/// `tcp_nodelay` to connections it is handed, and small responses (watch events, raft messages) would
/// otherwise wait for the peer's delayed ACK.
pub(super) fn nodelay(
    l: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(l).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// The accepted connections of a client URL: `nodelay`, each behind the `:authority` fix-up that
/// lets grpc-go clients dial `http://HOST:PORT` endpoints (see `authority`).
pub(super) fn client_connections(
    l: TcpListener,
) -> impl futures::Stream<
    Item = std::io::Result<super::authority::AuthorityFix<tokio::net::TcpStream>>,
> + Send
       + 'static {
    use tokio_stream::StreamExt;
    nodelay(l).map(|conn| conn.map(super::authority::AuthorityFix::new))
}

impl<S> tonic::transport::server::Connected for super::authority::AuthorityFix<S>
where
    S: tonic::transport::server::Connected + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.get_ref().connect_info()
    }
}

/// Binds every client URL. A host name is resolved and its first IPv4 address preferred.
pub async fn bind(urls: &[String]) -> Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for u in urls {
        let parsed = url::Url::parse(u).map_err(|e| Error::Internal(format!("{u}: {e}")))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(Error::Internal(format!("{u}: not an http or https URL")));
        }
        let host = parsed.host_str().unwrap_or("localhost");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = parsed.port().unwrap_or(2379);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::Internal(format!("resolve {u}: {e}")))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| Error::Internal(format!("{u}: no address")))?;
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Internal(format!("listen on {u} ({addr}): {e}")))?;
        tracing::info!(url = %u, address = %addr, "listening");
        out.push(l);
    }
    Ok(out)
}

/// A client or peer URL's listener: TCP, or a unix socket for `unix://` URLs.
pub enum Listener {
    Tcp(TcpListener),
    Unix(tokio::net::UnixListener),
}

/// A bound URL: its listener, and whether the URL asks for TLS (`https://`).
pub struct Bound {
    pub url: String,
    pub listener: Listener,
}

impl Bound {
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("https://")
    }
}

/// Binds every client or peer URL; a `unix://` URL listens on its socket path (a stale socket file left
/// by an earlier run is removed first, as etcd does).
pub async fn bind_any(urls: &[String]) -> Result<Vec<Bound>> {
    let mut out = Vec::new();
    for u in urls {
        match crate::config::unix_socket_path(u) {
            Some(path) => {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::Internal(format!("listen on {u}: {e}"))),
                }
                let l = tokio::net::UnixListener::bind(path)
                    .map_err(|e| Error::Internal(format!("listen on {u}: {e}")))?;
                tracing::info!(url = %u, "listening");
                out.push(Bound {
                    url: u.clone(),
                    listener: Listener::Unix(l),
                });
            }
            None => {
                let mut l = bind(std::slice::from_ref(u)).await?;
                if let Some(l) = l.pop() {
                    out.push(Bound {
                        url: u.clone(),
                        listener: Listener::Tcp(l),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The TLS connections of `l`: each accepted connection is handshaken in its own task and handed
/// on when the handshake succeeds; a failed one is logged (a plaintext client on a TLS port, a
/// certificate of another CA, an expired certificate) and dropped.
pub(super) fn tls_connections(
    l: TcpListener,
    tls: Arc<crate::tls::Tls>,
    url: String,
) -> impl futures::Stream<Item = std::io::Result<TlsConn>> + Send + 'static {
    use tokio_stream::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let incoming = nodelay(l);
        tokio::pin!(incoming);
        loop {
            let next = tokio::select! {
                _ = tx.closed() => break,
                n = incoming.next() => n,
            };
            let conn = match next {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    tracing::debug!(url = %url, error = %e, "accept failed");
                    continue;
                }
            };
            let remote = conn.peer_addr().ok();
            // The material in use now (it is reloaded when its files change).
            let (tx, acceptor, url) = (tx.clone(), tls.acceptor(), url.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send(Ok(TlsConn(s))).await;
                    }
                    Ok(Err(e)) => {
                        let e = crate::tls::go_terms(e);
                        tracing::warn!(url = %url, remote = ?remote, error = %e, "TLS handshake refused")
                    }
                    Err(_) => {
                        tracing::warn!(url = %url, remote = ?remote, "TLS handshake timed out")
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A server-side TLS connection as tonic serves it.
pub struct TlsConn(tokio_rustls::server::TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = <TcpStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
