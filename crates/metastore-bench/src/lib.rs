//! `metastore bench`: a load generator modelled on etcd's `benchmark` tool, so that metastore and etcd
//! can be measured with the same client in the same run. It talks etcd's gRPC API only, so it measures
//! either server.
//!
//! `--clients` concurrent workers share `--conns` gRPC connections; together they send `--total`
//! requests (or stop at `--time-limit`). Each request's latency is recorded; the summary follows
//! etcd's benchmark output (total, slowest, fastest, average, stddev, requests/sec, histogram,
//! percentiles), then one JSON line for scripts.

mod conn;
mod report;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use conn::H2Conn;
use metastore_proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, request_op, watch_client::WatchClient,
    watch_request, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchCreateRequest, WatchRequest,
};
use report::Report;

/// Options shared by every benchmark.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// gRPC endpoints (host:port), comma separated.
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Total number of concurrent clients.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Total number of requests.
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Stop after this many seconds even if --total is not reached.
    #[arg(long, default_value_t = 120)]
    pub time_limit: u64,
    /// Allow endpoints that are not on loopback.
    #[arg(long)]
    pub allow_remote: bool,
    #[command(subcommand)]
    pub cmd: BenchCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BenchCmd {
    /// Put keys.
    Put {
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Number of distinct keys.
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Keys in order instead of random.
        #[arg(long)]
        sequential_keys: bool,
    },
    /// Range one key (or [key, end)).
    Range {
        key: String,
        end: Option<String>,
        /// l (linearizable) or s (serializable).
        #[arg(long, default_value = "l")]
        consistency: String,
    },
    /// Txns of --txn-ops puts each (no compare).
    TxnPut {
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Puts per txn.
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// Latency from a Put to the watch event it causes.
    WatchLatency {
        #[arg(long, default_value_t = 8)]
        val_size: usize,
    },
    /// KeepAlive round trips on one lease per client.
    LeaseKeepalive,
}

/// The `host:port` of an endpoint given as `host:port` or `http://host:port`.
fn endpoint_addr(ep: &str) -> Result<&str, String> {
    let addr = ep
        .strip_prefix("http://")
        .unwrap_or(ep)
        .trim_end_matches('/');
    if addr.contains("://") {
        return Err(format!(
            "endpoint {ep}: only plain http endpoints are supported (host:port or http://host:port)"
        ));
    }
    Ok(addr)
}

/// Whether the `host:port` `addr` names this machine.
fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn key_bytes(n: u64, size: usize) -> Vec<u8> {
    let mut k = vec![b'0'; size.max(1)];
    let digits = n.to_string().into_bytes();
    let len = k.len();
    let take = digits.len().min(len);
    k[len - take..].copy_from_slice(&digits[digits.len() - take..]);
    k
}

/// Runs a benchmark and prints its report. Returns an error text for the command line.
pub async fn run(args: BenchArgs) -> Result<(), String> {
    if args.clients == 0 || args.conns == 0 || args.total == 0 || args.endpoints.is_empty() {
        return Err("--clients, --conns, --total and --endpoints must be non-zero".into());
    }
    let addrs = args
        .endpoints
        .iter()
        .map(|e| endpoint_addr(e))
        .collect::<Result<Vec<_>, _>>()?;
    if !args.allow_remote {
        if let Some(addr) = addrs.iter().find(|a| !is_loopback(a)) {
            return Err(format!(
                "endpoint {addr} is not on loopback; pass --allow-remote to benchmark it"
            ));
        }
    }
    let mut channels = Vec::new();
    for i in 0..args.conns {
        channels.push(H2Conn::connect(addrs[i % addrs.len()]).await?);
    }
    let name = match &args.cmd {
        BenchCmd::Put { .. } => "put",
        BenchCmd::Range { .. } => "range",
        BenchCmd::TxnPut { .. } => "txn-put",
        BenchCmd::WatchLatency { .. } => "watch-latency",
        BenchCmd::LeaseKeepalive => "lease-keepalive",
    };
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.time_limit);
    let progress = report::Progress::start(counter.clone(), args.total);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let ch = channels[c % channels.len()].clone();
        let cmd = args.cmd.clone();
        let counter = counter.clone();
        let total = args.total;
        tasks.push(tokio::spawn(async move {
            worker(c as u64, ch, cmd, counter, total, deadline).await
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0u64;
    for t in tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    progress.stop();
    let report = Report::new(name, lat, errors, elapsed);
    report.print();
    Ok(())
}

/// One client: takes request numbers until the total or the deadline; returns latencies and errors.
async fn worker(
    id: u64,
    ch: H2Conn,
    cmd: BenchCmd,
    counter: Arc<AtomicU64>,
    total: u64,
    deadline: Instant,
) -> (Vec<Duration>, u64) {
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut kv = KvClient::new(ch.clone());
    let mut rng_state = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rand = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    // Per-benchmark state that lives across requests.
    let mut watch: Option<(
        tokio::sync::mpsc::Sender<WatchRequest>,
        tonic::Streaming<metastore_proto::etcdserverpb::WatchResponse>,
        Vec<u8>,
    )> = None;
    let mut keepalive: Option<(
        tokio::sync::mpsc::Sender<LeaseKeepAliveRequest>,
        tonic::Streaming<metastore_proto::etcdserverpb::LeaseKeepAliveResponse>,
        i64,
    )> = None;
    match &cmd {
        BenchCmd::WatchLatency { .. } => {
            let key = format!("watch-latency-{id}").into_bytes();
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let create = WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key: key.clone(),
                        ..Default::default()
                    },
                )),
            };
            if tx.send(create).await.is_err() {
                return (lat, 1);
            }
            let mut w = WatchClient::new(ch.clone());
            match w
                .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            {
                Ok(s) => {
                    let mut s = s.into_inner();
                    // The created response.
                    if !matches!(s.message().await, Ok(Some(_))) {
                        return (lat, 1);
                    }
                    watch = Some((tx, s, key));
                }
                Err(_) => return (lat, 1),
            }
        }
        BenchCmd::LeaseKeepalive => {
            let mut l = LeaseClient::new(ch.clone());
            let id = match l.lease_grant(LeaseGrantRequest { ttl: 30, id: 0 }).await {
                Ok(r) => r.into_inner().id,
                Err(_) => return (lat, 1),
            };
            // A gRPC-Go server (etcd) sends the response headers with the first response, so the
            // stream only opens once a first request is under way; that round trip is not measured.
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                return (lat, 1);
            }
            match l
                .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            {
                Ok(s) => {
                    let mut s = s.into_inner();
                    if !matches!(s.message().await, Ok(Some(r)) if r.ttl > 0) {
                        return (lat, 1);
                    }
                    keepalive = Some((tx, s, id));
                }
                Err(_) => return (lat, 1),
            }
        }
        _ => {}
    }
    loop {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        if n >= total || Instant::now() >= deadline {
            break;
        }
        let t0 = Instant::now();
        let ok = match &cmd {
            BenchCmd::Put {
                key_size,
                val_size,
                key_space_size,
                sequential_keys,
            } => {
                let k = if *sequential_keys {
                    n % key_space_size.max(&1)
                } else {
                    rand() % key_space_size.max(&1)
                };
                kv.put(PutRequest {
                    key: key_bytes(k, *key_size),
                    value: vec![b'v'; *val_size],
                    ..Default::default()
                })
                .await
                .is_ok()
            }
            BenchCmd::Range {
                key,
                end,
                consistency,
            } => kv
                .range(RangeRequest {
                    key: key.clone().into_bytes(),
                    range_end: end.clone().unwrap_or_default().into_bytes(),
                    serializable: consistency == "s",
                    ..Default::default()
                })
                .await
                .is_ok(),
            BenchCmd::TxnPut {
                key_size,
                val_size,
                key_space_size,
                txn_ops,
            } => {
                let ops = (0..*txn_ops)
                    .map(|i| RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: key_bytes(
                                (rand() % key_space_size.max(&1)) * (*txn_ops as u64) + i as u64,
                                *key_size,
                            ),
                            value: vec![b'v'; *val_size],
                            ..Default::default()
                        })),
                    })
                    .collect();
                kv.txn(TxnRequest {
                    compare: vec![],
                    success: ops,
                    failure: vec![],
                })
                .await
                .is_ok()
            }
            BenchCmd::WatchLatency { val_size } => match watch.as_mut() {
                Some((_, stream, key)) => {
                    let put = kv
                        .put(PutRequest {
                            key: key.clone(),
                            value: vec![b'v'; *val_size],
                            ..Default::default()
                        })
                        .await
                        .is_ok();
                    put && matches!(stream.message().await, Ok(Some(r)) if !r.events.is_empty())
                }
                None => false,
            },
            BenchCmd::LeaseKeepalive => match keepalive.as_mut() {
                Some((tx, stream, id)) => {
                    tx.send(LeaseKeepAliveRequest { id: *id }).await.is_ok()
                        && matches!(stream.message().await, Ok(Some(r)) if r.ttl > 0)
                }
                None => false,
            },
        };
        if ok {
            lat.push(t0.elapsed());
        } else {
            errors += 1;
        }
    }
    drop(watch.map(|(tx, _, _)| tx));
    (lat, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection_and_keys() {
        assert!(is_loopback("127.0.0.1:2379"));
        assert!(is_loopback("localhost:2379"));
        assert!(is_loopback("[::1]:2379"));
        assert_eq!(endpoint_addr("http://[::1]:2379/"), Ok("[::1]:2379"));
        assert_eq!(endpoint_addr("127.0.0.1:2379"), Ok("127.0.0.1:2379"));
        assert_eq!(
            endpoint_addr("https://127.0.0.1:2379"),
            Err(
                "endpoint https://127.0.0.1:2379: only plain http endpoints are supported \
                 (host:port or http://host:port)"
                    .to_string()
            )
        );
        assert!(!is_loopback("10.0.0.1:2379"));
        assert_eq!(key_bytes(42, 8), b"00000042");
        assert_eq!(key_bytes(123456789, 4), b"6789");
    }
}
