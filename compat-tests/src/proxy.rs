//! A loopback TCP proxy that can cut traffic: members advertise the proxy as their peer URL, so
//! blocking a member's proxy partitions it from every message the others send it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy from `port` to `target`.
pub struct Proxy {
    pub port: u16,
    blocked: Arc<AtomicBool>,
    /// Bumped on every block, so connections opened before it end.
    epoch: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
    conns: Arc<AtomicU64>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `127.0.0.1:target`.
    pub async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let blocked = Arc::new(AtomicBool::new(false));
        let (epoch, _) = watch::channel(0u64);
        let conns = Arc::new(AtomicU64::new(0));
        let (b, e, n) = (blocked.clone(), epoch.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                // An accept error (a connection reset before it was accepted, say when the member
                // behind was just killed) ends that connection, not the proxy.
                let inbound = match listener.accept().await {
                    Ok((inbound, _)) => inbound,
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if b.load(Ordering::Acquire) {
                    drop(inbound);
                    continue;
                }
                let mut cut = e.subscribe();
                n.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            blocked,
            epoch,
            task,
            conns,
        }
    }

    /// Cuts every connection and refuses new ones.
    pub fn block(&self) {
        self.blocked.store(true, Ordering::Release);
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Lets traffic through again.
    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::Release);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.conns.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
