//! `metastore gateway start`: etcd's gateway, a plain TCP proxy in front of the members' client
//! URLs (`--endpoints`, `--listen-addr`, `--retry-delay`), so that clients can keep one fixed
//! address for the cluster.
//!
//! Every accepted connection goes to the next endpoint in turn; an endpoint that cannot be dialed
//! is skipped for `--retry-delay` (etcd's tcpproxy does the same) and the connection tries the next
//! one. Bytes are copied both ways untouched (HTTP/2, TLS or anything else), until either side
//! closes.
//!
//! Invariants: only the endpoints given are ever dialed; a connection no endpoint takes is closed;
//! the proxy stops on SIGINT/SIGTERM (the future given to [`run`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};

use crate::duration::parse_go_duration;

/// `metastore gateway [flags] start [flags]`: etcd's command line (the flags may stand on either
/// side of `start`, as with etcd's cobra commands).
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub flags: StartArgs,
    #[command(subcommand)]
    pub cmd: GatewayCmd,
}

#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum GatewayCmd {
    /// Start the gateway.
    Start,
}

/// The gateway's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    /// Comma separated etcd cluster endpoints (`host:port`, or URLs whose scheme is dropped).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2379",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// Listen address.
    #[arg(long, global = true, default_value = "127.0.0.1:23790")]
    pub listen_addr: String,
    /// How long an endpoint that failed is left out before it is tried again (Go duration).
    #[arg(long, global = true, default_value = "1m", value_parser = parse_go_duration)]
    pub retry_delay: Duration,
}

/// One endpoint and until when it is left out after a failed dial.
struct Remote {
    addr: String,
    failed_until: Mutex<Option<Instant>>,
}

impl Remote {
    fn usable(&self, now: Instant) -> bool {
        self.failed_until.lock().is_none_or(|t| now >= t)
    }
}

/// `host:port` of an endpoint given as `host:port` or as a URL (`http://host:port`).
fn host_port(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    rest.trim_end_matches('/').to_string()
}

/// Serves the gateway until `shutdown` completes.
pub async fn run(
    args: StartArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let remotes: Vec<Arc<Remote>> = args
        .endpoints
        .iter()
        .map(|e| host_port(e.trim()))
        .filter(|e| !e.is_empty())
        .map(|addr| {
            Arc::new(Remote {
                addr,
                failed_until: Mutex::new(None),
            })
        })
        .collect();
    if remotes.is_empty() {
        return Err("no endpoints found".into());
    }
    let listener = TcpListener::bind(&args.listen_addr)
        .await
        .map_err(|e| format!("listen on {}: {e}", args.listen_addr))?;
    let names: Vec<&str> = remotes.iter().map(|r| r.addr.as_str()).collect();
    tracing::info!(endpoints = ?names, address = %args.listen_addr, "ready to proxy client requests");
    let remotes = Arc::new(remotes);
    let next = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = &mut shutdown => return Ok(()),
        };
        let (client, peer) = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let remotes = remotes.clone();
        let start = next.fetch_add(1, Ordering::Relaxed);
        let delay = args.retry_delay;
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let Some(mut upstream) = dial(&remotes, start, delay).await else {
                tracing::warn!(client = %peer, "no endpoint could be reached, closing the connection");
                return;
            };
            let mut client = client;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}

/// Dials the endpoints from `start` on, skipping those left out; a failed one is left out for
/// `delay`.
async fn dial(remotes: &[Arc<Remote>], start: usize, delay: Duration) -> Option<TcpStream> {
    let now = Instant::now();
    for i in 0..remotes.len() {
        let r = &remotes[(start + i) % remotes.len()];
        if !r.usable(now) {
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&r.addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                *r.failed_until.lock() = None;
                return Some(s);
            }
            Ok(Err(e)) => {
                tracing::warn!(endpoint = %r.addr, error = %e, "endpoint unreachable, leaving it out")
            }
            Err(_) => tracing::warn!(endpoint = %r.addr, "endpoint did not answer, leaving it out"),
        }
        *r.failed_until.lock() = Some(Instant::now() + delay);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn endpoints_lose_their_scheme() {
        assert_eq!(host_port("http://127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(host_port("127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(host_port("https://h:1/"), "h:1");
    }

    /// A connection reaches the live endpoint, skipping a dead one, and bytes go both ways.
    #[tokio::test]
    async fn connections_skip_a_dead_endpoint_and_copy_both_ways() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap().to_string();
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        tokio::spawn(async move {
            let (mut s, _) = live.accept().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf.map(|b| b.to_ascii_uppercase()))
                .await
                .unwrap();
        });
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let listen = format!("127.0.0.1:{port}");
        let args = StartArgs {
            endpoints: vec![format!("http://{dead_addr}"), live_addr],
            listen_addr: listen.clone(),
            retry_delay: Duration::from_secs(60),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let proxy = tokio::spawn(run(args, async move {
            let _ = stop_rx.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut c = loop {
            match TcpStream::connect(&listen).await {
                Ok(c) => break c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "proxy not listening: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        c.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"PING");
        let _ = stop_tx.send(());
        proxy.await.unwrap().unwrap();
    }
}
