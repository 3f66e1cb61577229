//! Multi-member clusters of the target binary on loopback: start, find the leader, stop and restart
//! members, add members. Every member has its own data dir under one temp dir.

use std::time::Duration;

use etcd_client::Client;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::member::{Member, MemberConfig};
use crate::ports::free_ports;
use crate::proxy::Proxy;
use crate::target::target;

const ATTEMPTS: usize = 4;
const TOKEN: &str = "compat-cluster";

/// Clusters in one test binary run one at a time: several multi-member clusters with 50 ms heartbeats
/// on a 2-core machine at once make elections flap and tests flaky.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running cluster started by this harness.
pub struct Cluster {
    pub members: Vec<Member>,
    /// With `start_proxied`: the proxy in front of each member's peer port (inbound peer traffic).
    pub proxies: Vec<Proxy>,
    dir: TempDir,
    /// `http`, or `https` for peer TLS.
    peer_scheme: &'static str,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn member_config(
    dir: &std::path::Path,
    name: &str,
    client: u16,
    peer: u16,
    cluster: &str,
    extra: &[&str],
    peer_scheme: &'static str,
) -> MemberConfig {
    let mut extra_args: Vec<String> = vec![
        "--initial-cluster-token".into(),
        TOKEN.into(),
        "--heartbeat-interval".into(),
        "50".into(),
        "--election-timeout".into(),
        "500".into(),
    ];
    extra_args.extend(extra.iter().map(|s| s.to_string()));
    MemberConfig {
        peer_scheme,
        tls_client_port: None,
        target: target(),
        name: name.into(),
        client_port: client,
        peer_port: peer,
        advertised_peer_port: None,
        data_dir: dir.join(format!("{name}.etcd")),
        initial_cluster: cluster.into(),
        extra_args,
        client_socket: None,
        envs: Vec::new(),
    }
}

impl Cluster {
    /// Starts `n` members (m1..mn) with `extra` flags each and waits until every one serves.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_some(n, extra, n).await
    }

    /// Configures `n` members but starts only the first `running` of them.
    pub async fn start_some(n: usize, extra: &[&str], running: usize) -> Cluster {
        Cluster::start_scheme(n, extra, running, "http").await
    }

    /// Starts `n` members whose peer URLs are `https://` (the peer TLS flags come in `extra`).
    pub async fn start_tls_peers(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_scheme(n, extra, n, "https").await
    }

    /// Starts `n` members whose peer URLs are `unix://` sockets.
    pub async fn start_unix_peers(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_scheme(n, extra, n, "unix").await
    }

    async fn start_scheme(
        n: usize,
        extra: &[&str],
        running: usize,
        peer_scheme: &'static str,
    ) -> Cluster {
        let turn = ONE_AT_A_TIME.lock().await;
        let dir = tempfile::Builder::new()
            .prefix("compat-cluster-")
            .tempdir()
            .expect("create temp dir");
        'attempt: for attempt in 1..=ATTEMPTS {
            let ports = free_ports(2 * n);
            let mut configs: Vec<MemberConfig> = (0..n)
                .map(|i| {
                    member_config(
                        dir.path(),
                        &format!("m{}", i + 1),
                        ports[2 * i],
                        ports[2 * i + 1],
                        "",
                        extra,
                        peer_scheme,
                    )
                })
                .collect();
            let cluster = configs
                .iter()
                .map(|c| format!("{}={}", c.name, c.peer_url()))
                .collect::<Vec<_>>()
                .join(",");
            let mut members: Vec<Member> = configs
                .drain(..)
                .map(|mut cfg| {
                    cfg.initial_cluster = cluster.clone();
                    let _ = std::fs::remove_dir_all(&cfg.data_dir);
                    let log = dir.path().join(format!("{}.log", cfg.name));
                    Member::configured(cfg, log)
                })
                .collect();
            for m in members.iter_mut().take(running) {
                m.spawn_process();
            }
            // Give a bind failure a moment to show, then retry everything with fresh ports.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if members.iter_mut().any(|m| m.exited_on_bind_failure()) && attempt < ATTEMPTS {
                    for m in &mut members {
                        m.kill9();
                    }
                    continue 'attempt;
                }
                let mut ready = true;
                for m in members.iter().take(running) {
                    if !m.probe_ready().await {
                        ready = false;
                    }
                }
                if ready || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for m in members.iter_mut().take(running) {
                m.wait_serving().await;
            }
            return Cluster {
                members,
                proxies: Vec::new(),
                dir,
                peer_scheme,
                _turn: turn,
            };
        }
        panic!("could not start a cluster: ports kept colliding");
    }

    /// Starts `n` members whose advertised peer URLs are proxies (see `proxies`), so that a member
    /// can be cut off from the others.
    pub async fn start_proxied(n: usize, extra: &[&str]) -> Cluster {
        let turn = ONE_AT_A_TIME.lock().await;
        let dir = tempfile::Builder::new()
            .prefix("compat-cluster-")
            .tempdir()
            .expect("create temp dir");
        let ports = free_ports(2 * n);
        let mut proxies = Vec::new();
        for i in 0..n {
            proxies.push(Proxy::start(ports[2 * i + 1]).await);
        }
        let cluster = (0..n)
            .map(|i| format!("m{}=http://127.0.0.1:{}", i + 1, proxies[i].port))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Member> = (0..n)
            .map(|i| {
                let name = format!("m{}", i + 1);
                let mut cfg = member_config(
                    dir.path(),
                    &name,
                    ports[2 * i],
                    ports[2 * i + 1],
                    &cluster,
                    extra,
                    "http",
                );
                cfg.advertised_peer_port = Some(proxies[i].port);
                Member::configured(cfg, dir.path().join(format!("{name}.log")))
            })
            .collect();
        for m in &mut members {
            m.spawn_process();
        }
        for m in &mut members {
            m.wait_serving().await;
        }
        Cluster {
            members,
            proxies,
            dir,
            peer_scheme: "http",
            _turn: turn,
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint()).collect()
    }

    /// A client for every endpoint.
    pub async fn client(&self) -> Client {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10));
        Client::connect(self.endpoints(), Some(options))
            .await
            .expect("connect")
    }

    /// The index of the member that leads, as the running members agree (waits up to 30 s).
    pub async fn leader(&mut self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ids = Vec::new();
            for (i, m) in self.members.iter_mut().enumerate() {
                if !m.is_running() {
                    continue;
                }
                let mut c = m.client().await;
                if let Ok(s) = c.status().await {
                    let me = s.header().map(|h| h.member_id()).unwrap_or(0);
                    ids.push((i, me, s.leader()));
                }
            }
            if let Some(&(_, _, lead)) = ids.first() {
                if lead != 0 && ids.iter().all(|&(_, _, l)| l == lead) {
                    if let Some(&(i, _, _)) = ids.iter().find(|&&(_, me, _)| me == lead) {
                        return i;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within 30 s: {ids:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The member id of member `i` (from its Status header).
    pub async fn member_id(&self, i: usize) -> u64 {
        let mut c = self.members[i].client().await;
        c.status()
            .await
            .expect("status")
            .header()
            .map(|h| h.member_id())
            .unwrap_or(0)
    }

    /// Configures (not starts) a new member that will join with `--initial-cluster-state existing`.
    pub fn new_joining_member(
        &self,
        name: &str,
        initial_cluster: &str,
        peer_port: u16,
        extra: &[&str],
    ) -> Member {
        // The peer port was picked (and released) earlier: the OS may hand it out again.
        let client = free_ports(2)
            .into_iter()
            .find(|&p| p != peer_port)
            .expect("two distinct free ports");
        let mut cfg = member_config(
            self.dir.path(),
            name,
            client,
            peer_port,
            initial_cluster,
            extra,
            self.peer_scheme,
        );
        cfg.extra_args.push("--initial-cluster-state".into());
        cfg.extra_args.push("existing".into());
        Member::configured(cfg, self.dir.path().join(format!("{name}.log")))
    }
}
