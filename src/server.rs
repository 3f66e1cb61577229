//! The member: wires storage, MVCC, raft and apply together and offers the request paths to the API
//! layer (propose and wait, linearizable read barrier, reads on a snapshot, response headers).
//!
//! Start-up: open the data dir; bootstrap a new cluster from the initial-cluster flags, or come back from
//! the data dir (the flags are then ignored); start the raft and apply threads; publish this member's
//! name and client URLs through raft; then serve.
//!
//! Invariants: handlers never block the async runtime (RocksDB reads run on the blocking pool) and never
//! wait on the raft or apply threads other than through channels with a deadline.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::{oneshot, watch};
use tokio::time::{timeout_at, Instant};

use crate::apply::{stored_applied_index, Applied, Applier, ApplyResult};
use crate::cluster::{self, LOCAL_CLUSTER_ID, LOCAL_MEMBER_ID};
use crate::config::{ClusterState, Config};
use crate::error::{Error, Result};
use crate::mvcc::compact::Compactor;
use crate::mvcc::watch::WatchHub;
use crate::mvcc::{ReadView, Store};
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::metastorepb::{
    internal_request::Request, InternalRequest, MemberAttributes, MemberRecord, MembersResponse,
};
use crate::raft::network::{MemNetwork, Network};
use crate::raft::propose::{IdGen, Wait};
use crate::raft::transport::{fetch_members, Dialer, Transport};
use crate::raft::{self as raftmod, NodeConfig, NodeMsg, RaftHandle, RaftStorage};
use crate::storage::{
    checkpoint, encode_u64, Batch, Db, Engine, Rocks, CF_LOCAL, CF_META, META_APPLIED_INDEX,
    META_APPLIED_TERM,
};

/// Most committed-but-unapplied entries before new proposals are refused (etcd's limit).
const MAX_GAP_BETWEEN_APPLY_AND_COMMIT: u64 = 5_000;

/// A running member.
pub struct EtcdServer {
    pub cfg: Config,
    /// The state database (keyspace, members, leases, applied index).
    pub db: Db,
    /// The raft log database.
    log_db: Rocks,
    pub store: Store,
    pub raft: RaftHandle,
    pub compactor: Compactor,
    /// Watchers of this member's keyspace (fed by apply).
    pub watch_hub: WatchHub,
    /// The gRPC peer transport: its dialer reaches the peers' Leader and Peer services.
    pub transport: Transport,
    /// How raft reaches the peers (the gRPC transport, or an in-process network in tests).
    pub network: Arc<dyn Network>,
    pub lessor: Arc<crate::lease::Lessor>,
    /// The applied alarms (for Status).
    pub alarms: crate::alarm::AlarmView,
    pub member_id: u64,
    pub cluster_id: u64,
    waits: Arc<Wait<ApplyResult>>,
    ids: IdGen,
    applied: watch::Receiver<u64>,
    threads: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The backend quota (`--quota-backend-bytes`).
    quota: crate::quota::Quota,
    /// Serializes Defragment calls.
    pub defrag_lock: tokio::sync::Mutex<()>,
    /// This member's metric families (`/metrics`).
    pub metrics: crate::metrics::Metrics,
}

impl EtcdServer {
    /// Opens or bootstraps the member and starts its raft and apply threads. Runs on a blocking
    /// thread; `rt` runs the peer transport.
    pub fn start(
        cfg: Config,
        rt: tokio::runtime::Handle,
        dialer: Dialer,
    ) -> Result<Arc<EtcdServer>> {
        EtcdServer::start_on(cfg, rt, dialer, None)
    }

    /// Starts a member whose raft talks to its peers over the in-process network `net` (unit tests
    /// of several members in one process); a joining member learns the cluster from `net`.
    pub fn start_in_process(
        cfg: Config,
        rt: tokio::runtime::Handle,
        net: &MemNetwork,
    ) -> Result<Arc<EtcdServer>> {
        EtcdServer::start_on(cfg, rt, Dialer::default(), Some(net))
    }

    fn start_on(
        cfg: Config,
        rt: tokio::runtime::Handle,
        dialer: Dialer,
        memnet: Option<&MemNetwork>,
    ) -> Result<Arc<EtcdServer>> {
        let db = Db::open(&cfg.data_dir)?;
        let log_db = Rocks::open_log(&cfg.data_dir)?;
        let snap_dir = cfg.data_dir.join("snap");
        // Finish a snapshot install that a crash interrupted.
        if let Some(dir) = db.get(CF_LOCAL, checkpoint::INSTALLING)? {
            let dir = std::path::PathBuf::from(String::from_utf8_lossy(&dir).to_string());
            tracing::warn!(dir = %dir.display(), "redoing an interrupted snapshot install");
            checkpoint::install(&db, &dir)?;
        }
        let raft_storage = RaftStorage::open(log_db.clone(), db.clone(), snap_dir.clone())?;
        let (member_id, cluster_id) = match db.get(CF_LOCAL, LOCAL_MEMBER_ID)? {
            Some(m) => {
                let m = crate::storage::decode_u64(&m);
                let c = db.get_u64(CF_LOCAL, LOCAL_CLUSTER_ID)?;
                tracing::info!(member_id = %format!("{m:x}"), cluster_id = %format!("{c:x}"),
                    "restarting member from its data dir (initial-cluster flags ignored)");
                if cfg.force_new_cluster {
                    force_new_cluster(&db, &raft_storage, m)?;
                }
                (m, c)
            }
            None if cfg.initial_cluster_state == ClusterState::Existing => {
                let resp = match memnet {
                    Some(net) => net.members().ok_or_else(|| {
                        Error::Internal("no member of the in-process cluster to join".into())
                    })?,
                    None => fetch_cluster(&cfg, &rt, &dialer)?,
                };
                join(&cfg, &db, resp)?
            }
            None => bootstrap(&cfg, &db, &raft_storage)?,
        };
        // Applied state may be ahead of the log (snapshot installed, log not yet restarted).
        let applied = db.get_u64(CF_META, META_APPLIED_INDEX)?;
        let applied_term = db.get_u64(CF_META, META_APPLIED_TERM)?;
        if raft_storage.reconcile_with_applied(applied, applied_term)? {
            tracing::warn!(
                applied,
                "raft log restarted after the applied snapshot state"
            );
        }
        let transport = Transport::new(cluster_id, member_id, rt, snap_dir.clone(), dialer);
        let network: Arc<dyn Network> = match memnet {
            Some(net) => {
                let link = net.link(member_id, &snap_dir);
                net.register_state(member_id, db.clone(), cluster_id);
                Arc::new(link)
            }
            None => Arc::new(transport.clone()),
        };
        let peers: Vec<(u64, Vec<String>)> = cluster::list_records(&db)?
            .into_iter()
            .map(|m| (m.id, m.peer_urls))
            .collect();
        network.set_peers(&peers);
        let conf = raft_storage.conf_state();
        let metrics = crate::metrics::Metrics::new();
        let store = Store::open(db.clone())?;
        store.metrics.register(&metrics);
        metrics.register(raft_storage.wal_fsync());
        let compactor = Compactor::start(db.clone())?;
        let watch_hub = WatchHub::new(store.clone())?;
        let applied = stored_applied_index(&store)?;
        let lessor = Arc::new(crate::lease::Lessor::load(&db)?);
        let alarms = crate::alarm::AlarmSet::load(&db)?;
        let alarm_view = crate::alarm::AlarmView::new(&alarms);
        let waits: Arc<Wait<ApplyResult>> = Arc::new(Wait::default());
        let (apply_tx, apply_rx) = mpsc::channel();
        let (applied_tx, applied_rx) = watch::channel(applied);
        let drop_waits = waits.clone();
        let (raft, raft_join) = raftmod::node::start(
            NodeConfig {
                id: member_id,
                heartbeat: cfg.heartbeat,
                election_ticks: cfg.election_ticks(),
                applied,
            },
            raft_storage,
            &raftmod::logger(),
            apply_tx,
            Box::new(move |id, err| {
                drop_waits.trigger(id, Err(err));
            }),
            network.clone(),
        )?;
        metrics.register(&raft.status.leader_changes);
        raft.status.is_learner.store(
            conf.learners.contains(&member_id),
            std::sync::atomic::Ordering::Release,
        );
        let applier = Applier {
            store: store.clone(),
            waits: waits.clone(),
            compactor: compactor.clone(),
            watch_hub: watch_hub.clone(),
            raft: raft.clone(),
            transport: network.clone(),
            lessor: lessor.clone(),
            applied_tx,
            snapshot_count: cfg.snapshot_count,
            catchup_entries: cfg.snapshot_catchup_entries,
            applied,
            last_log_compaction: applied,
            alarms,
            alarm_view: alarm_view.clone(),
        };
        let apply_join = std::thread::Builder::new()
            .name("apply".into())
            .spawn(move || applier.run(apply_rx))
            .map_err(|e| Error::Internal(format!("spawn apply thread: {e}")))?;
        let quota = crate::quota::Quota::new(db.clone(), cfg.quota_backend_bytes);
        Ok(Arc::new(EtcdServer {
            cfg,
            db,
            log_db,
            store,
            raft,
            compactor,
            watch_hub,
            transport,
            network,
            lessor,
            alarms: alarm_view,
            member_id,
            cluster_id,
            waits,
            ids: IdGen::new(member_id),
            applied: applied_rx,
            threads: parking_lot::Mutex::new(vec![raft_join, apply_join]),
            quota,
            defrag_lock: tokio::sync::Mutex::new(()),
            metrics,
        }))
    }

    /// Publishes this member's name and client URLs through raft, retried until it is applied: a
    /// member whose peers start late keeps trying until it is stopped, as etcd does.
    pub async fn publish(&self) {
        let mut attempt: u64 = 0;
        loop {
            let req = Request::MemberAttributes(MemberAttributes {
                member_id: self.member_id,
                name: self.cfg.name.clone(),
                client_urls: self.cfg.advertise_client_urls.clone(),
            });
            match self.propose(req).await {
                Ok(_) => {
                    // etcd's wording: operators and etcd's own test harness wait for these lines.
                    tracing::info!(
                        local_member_id = %format!("{:x}", self.member_id),
                        cluster_id = %format!("{:x}", self.cluster_id),
                        client_urls = ?self.cfg.advertise_client_urls,
                        "published local member to cluster through raft"
                    );
                    tracing::info!(
                        cluster_version = crate::config::ETCD_API_VERSION,
                        "enabled capabilities for version {}",
                        crate::config::ETCD_API_VERSION
                    );
                    return;
                }
                Err(e) => {
                    attempt += 1;
                    // The first failures are normal while the peers come up.
                    if attempt >= 2 {
                        tracing::warn!(error = %e, attempt,
                            "failed to publish local member to cluster through raft, retrying");
                    } else {
                        tracing::debug!(error = %e, "publish not applied yet, retrying");
                    }
                    tokio::time::sleep(self.cfg.heartbeat).await;
                }
            }
        }
    }

    /// Expires leases while this member leads: a member that becomes leader first extends every
    /// lease by an election timeout; then each expired lease is revoked through raft (at most 1,000
    /// per second, as etcd).
    pub async fn run_lease_expiry(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let tick = Duration::from_millis(100);
        let mut was_leader = false;
        let mut revoking: std::collections::HashMap<i64, Instant> = Default::default();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.wait_for(|&s| s) => return,
            }
            let leader = self.raft.status.leader() == self.member_id;
            if leader && !was_leader {
                // Only leases last set before this member took over are extended: one granted or
                // renewed since (e.g. right after start-up, before this loop's first turn) keeps
                // its TTL.
                let since = self
                    .raft
                    .status
                    .leading_since()
                    .unwrap_or_else(std::time::Instant::now);
                self.lessor.promote(self.cfg.election_timeout, since);
                revoking.clear();
            }
            was_leader = leader;
            if !leader {
                continue;
            }
            let timeout = self.cfg.request_timeout();
            revoking.retain(|_, at| at.elapsed() < timeout);
            for id in self.lessor.expired(100) {
                if revoking.contains_key(&id) {
                    continue;
                }
                revoking.insert(id, Instant::now());
                let me = self.clone();
                tokio::spawn(async move {
                    let req =
                        Request::LeaseRevoke(crate::proto::etcdserverpb::LeaseRevokeRequest { id });
                    if let Err(e) = me.propose(req).await {
                        if e != Error::LeaseNotFound {
                            tracing::warn!(lease = id, error = %e, "revoking an expired lease failed");
                        }
                    }
                });
            }
        }
    }

    /// Stops the raft and apply threads (after the API has stopped).
    pub fn stop(&self) {
        let _ = self.raft.send(NodeMsg::Shutdown);
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        // Everything is in the raft log already; flushing makes the next start fast.
        for db in [&*self.db, &self.log_db as &dyn Engine] {
            if let Err(e) = db.flush() {
                tracing::warn!(error = %e, "flushing the database at shutdown failed");
            }
        }
    }

    /// A response header with this member's identity.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft.status.term(),
        }
    }

    /// Makes the next quota check read the size again (after a defragment).
    pub fn forget_backend_size(&self) {
        self.quota.forget();
    }

    /// etcd's backend quota: a request that adds `cost` bytes passes while the backend stays under
    /// `--quota-backend-bytes`; otherwise this member raises NOSPACE (unless it already has) and the
    /// request fails with `etcdserver: mvcc: database space exceeded`. Requests that add nothing pass.
    pub async fn check_quota(&self, cost: u64) -> Result<()> {
        use crate::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
        if self.quota.admits(cost) {
            return Ok(());
        }
        let raised = self
            .alarms
            .get()
            .iter()
            .any(|a| a.member_id == self.member_id && a.alarm == AlarmType::Nospace as i32);
        if !raised {
            let alarm = Request::Alarm(AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.member_id,
                alarm: AlarmType::Nospace as i32,
            });
            if let Err(e) = self.propose(alarm).await {
                tracing::warn!(error = %e, "raising the NOSPACE alarm failed");
            }
        }
        Err(Error::NoSpace)
    }

    /// Proposals waiting for their result on this member.
    pub fn proposals_pending(&self) -> usize {
        self.waits.len()
    }

    /// The applied raft index.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Proposes a request through raft and waits until it is applied here. Without a leader the
    /// proposal is retried until the request timeout, then fails with etcd's timeout error.
    pub async fn propose(&self, req: Request) -> Result<Applied> {
        let id = self.ids.next();
        let data = InternalRequest {
            id,
            request: Some(req),
        }
        .encode_to_vec();
        if data.len() > self.cfg.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        self.submit(id, |id| NodeMsg::Propose {
            id,
            data: data.clone(),
        })
        .await
    }

    /// Proposes a membership change (a ConfChangeV2 whose context describes the member).
    pub async fn propose_conf_change(
        &self,
        kind: crate::proto::metastorepb::member_change::Kind,
        member: MemberRecord,
    ) -> Result<Applied> {
        use crate::proto::metastorepb::member_change::Kind;
        use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
        let id = self.ids.next();
        let change_type = match kind {
            Kind::Add if member.is_learner => ConfChangeType::AddLearnerNode,
            Kind::Add | Kind::Promote => ConfChangeType::AddNode,
            Kind::Remove => ConfChangeType::RemoveNode,
            Kind::Update => return Err(Error::Internal("update is not a conf change".into())),
        };
        let node_id = member.id;
        let context = InternalRequest {
            id,
            request: Some(Request::MemberChange(
                crate::proto::metastorepb::MemberChange {
                    kind: kind as i32,
                    member: Some(member),
                },
            )),
        }
        .encode_to_vec();
        self.submit(id, |id| {
            let mut single = ConfChangeSingle::default();
            single.set_change_type(change_type);
            single.node_id = node_id;
            let mut cc = ConfChangeV2::default();
            cc.mut_changes().push(single);
            NodeMsg::ProposeConfChange {
                id,
                context: context.clone(),
                cc,
            }
        })
        .await
    }

    async fn submit(&self, id: u64, msg: impl Fn(u64) -> NodeMsg) -> Result<Applied> {
        let status = &self.raft.status;
        if status.commit().saturating_sub(self.applied_index()) > MAX_GAP_BETWEEN_APPLY_AND_COMMIT {
            return Err(Error::TooManyRequests);
        }
        let deadline = Instant::now() + self.cfg.request_timeout();
        loop {
            let rx = self.waits.register(id);
            if let Err(e) = self.raft.send(msg(id)) {
                self.waits.cancel(id);
                return Err(e);
            }
            match timeout_at(deadline, rx).await {
                Ok(Ok(Err(Error::NoLeader | Error::LeaderChanged))) => {
                    // Refused before it entered the log: safe to propose again once there is a leader.
                    if Instant::now() + self.cfg.heartbeat >= deadline {
                        return Err(Error::TimeoutDueToLeaderFail);
                    }
                    tokio::time::sleep(self.cfg.heartbeat).await;
                }
                Ok(Ok(result)) => return result,
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => {
                    self.waits.cancel(id);
                    return Err(if status.leader() == 0 {
                        Error::TimeoutDueToLeaderFail
                    } else {
                        Error::Timeout
                    });
                }
            }
        }
    }

    /// etcd's per-request checks before any work: `hasleader` metadata needs a leader; a learner
    /// serves only Status and serializable Range (`learner_ok`).
    pub fn guard(&self, md: &tonic::metadata::MetadataMap, learner_ok: bool) -> Result<()> {
        if self.raft.status.is_learner() && !learner_ok {
            return Err(Error::NotSupportedForLearner);
        }
        let wants_leader = md
            .get("hasleader")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "true");
        if wants_leader && self.raft.status.leader() == 0 {
            return Err(Error::NoLeader);
        }
        Ok(())
    }

    /// The leader's replication progress (None when this member is not the leader).
    pub async fn progress(&self) -> Result<Option<crate::raft::node::GroupProgress>> {
        let (tx, rx) = oneshot::channel();
        self.raft.send(NodeMsg::Progress(tx))?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Waits until this member has applied everything committed when the call began (ReadIndex).
    pub async fn read_barrier(&self) -> Result<()> {
        let deadline = Instant::now() + self.cfg.request_timeout();
        loop {
            let (tx, rx) = oneshot::channel();
            self.raft.send(NodeMsg::ReadIndex(tx))?;
            let index = match timeout_at(deadline, rx).await {
                Err(_) => return Err(Error::Timeout),
                Ok(Err(_)) => return Err(Error::Stopped),
                Ok(Ok(Ok(index))) => index,
                Ok(Ok(Err(e))) => {
                    if Instant::now() + self.cfg.heartbeat >= deadline {
                        return Err(e);
                    }
                    // No leader yet or the round was dropped: try a new round after a heartbeat.
                    tokio::time::sleep(self.cfg.heartbeat).await;
                    continue;
                }
            };
            let mut applied = self.applied.clone();
            return match timeout_at(deadline, applied.wait_for(|&a| a >= index)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(Error::Stopped),
                Err(_) => Err(Error::Timeout),
            };
        }
    }

    /// Runs blocking work (RocksDB reads outside the MVCC snapshot path) on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::Internal(format!("blocking task: {e}")))?
    }

    /// Runs a read on a snapshot of the committed state, on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadView<'_>) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.with_view(f))
            .await
            .map_err(|e| Error::Internal(format!("read task: {e}")))?
    }
}

/// `--force-new-cluster` on a member with data: it becomes the only voter and the only member
/// record (its id, the cluster id and the keyspace are kept), as etcd's disaster recovery does.
fn force_new_cluster(db: &Db, raft_storage: &RaftStorage, me: u64) -> Result<()> {
    let applied = db.get_u64(CF_META, META_APPLIED_INDEX)?;
    raft_storage.force_single_voter(me, applied)?;
    let mut batch = Batch::new();
    let mut removed = Vec::new();
    for m in cluster::list_records(db)? {
        if m.id != me {
            cluster::delete_member(&mut batch, m.id);
            removed.push(format!("{:x}", m.id));
        }
    }
    db.write(batch, true)?;
    tracing::warn!(member_id = %format!("{me:x}"), ?removed,
        "forcing a new one-member cluster (--force-new-cluster): the other members were removed");
    Ok(())
}

/// Writes the initial membership of a new cluster.
fn bootstrap(cfg: &Config, db: &Db, raft_storage: &RaftStorage) -> Result<(u64, u64)> {
    let mut names: Vec<String> = Vec::new();
    for (n, _) in &cfg.initial_cluster {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let mut members = Vec::new();
    for n in &names {
        let urls: Vec<String> = cfg
            .initial_cluster
            .iter()
            .filter(|(m, _)| m == n)
            .map(|(_, u)| u.clone())
            .collect();
        members.push(MemberRecord {
            id: cluster::member_id(&urls, &cfg.initial_cluster_token),
            name: n.clone(),
            peer_urls: urls,
            client_urls: Vec::new(),
            is_learner: false,
        });
    }
    let local = members.iter().find(|m| m.name == cfg.name).ok_or_else(|| {
        Error::Internal(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            cfg.name
        ))
    })?;
    let mut want = cfg.initial_advertise_peer_urls.clone();
    want.sort();
    let mut have = local.peer_urls.clone();
    have.sort();
    if want != have {
        return Err(Error::Internal(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\"(resolved from {:?}) != \"{}\"(resolved from {:?}))",
            cfg.name, have.join(","), want.join(","), want.join(","), want, have.join(","), have
        )));
    }
    let member_id = local.id;
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cluster_id = cluster::cluster_id(&ids);
    // Raft's initial state first: this member counts as bootstrapped once its ids are written below.
    raft_storage.bootstrap(ids)?;
    let mut batch = Batch::new();
    for m in &members {
        cluster::put_member(&mut batch, m);
    }
    // The initial state stands for raft index 1 (see RaftStorage::bootstrap).
    batch.put(CF_META, META_APPLIED_INDEX, encode_u64(1));
    batch.put(CF_META, META_APPLIED_TERM, encode_u64(1));
    batch.put(CF_LOCAL, LOCAL_MEMBER_ID, encode_u64(member_id));
    batch.put(CF_LOCAL, LOCAL_CLUSTER_ID, encode_u64(cluster_id));
    db.write(batch, true)?;
    tracing::info!(member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"),
        "bootstrapped a new cluster");
    Ok((member_id, cluster_id))
}

/// Asks the members named in --initial-cluster for the cluster id and the member list.
fn fetch_cluster(
    cfg: &Config,
    rt: &tokio::runtime::Handle,
    dialer: &Dialer,
) -> Result<MembersResponse> {
    let others: Vec<String> = cfg
        .initial_cluster
        .iter()
        .filter(|(_, u)| !cfg.initial_advertise_peer_urls.contains(u))
        .map(|(_, u)| u.clone())
        .collect();
    if others.is_empty() {
        return Err(Error::Internal(
            "--initial-cluster-state existing needs the other members in --initial-cluster".into(),
        ));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let resp = loop {
        if let Some(r) = rt.block_on(fetch_members(dialer, &others)) {
            break r;
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Internal(format!(
                "could not reach any member of the existing cluster at {others:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Ok(resp)
}

/// Joins an existing cluster described by `resp` (its id and members): finds this member (added
/// before with MemberAdd) by its peer URLs. The state itself arrives as a snapshot from the leader.
fn join(cfg: &Config, db: &Db, resp: MembersResponse) -> Result<(u64, u64)> {
    let mut want = cfg.initial_advertise_peer_urls.clone();
    want.sort();
    let me = resp
        .members
        .iter()
        .find(|m| {
            let mut have = m.peer_urls.clone();
            have.sort();
            have == want
        })
        .ok_or_else(|| {
            Error::Internal(format!(
                "member {:?} with peer URLs {want:?} has not been added to the cluster (add it with `etcdctl member add` first)",
                cfg.name
            ))
        })?;
    let (member_id, cluster_id) = (me.id, resp.cluster_id);
    let mut batch = Batch::new();
    // Know the peers before the leader's snapshot arrives (it replaces this list).
    for m in &resp.members {
        cluster::put_member(&mut batch, m);
    }
    batch.put(CF_LOCAL, LOCAL_MEMBER_ID, encode_u64(member_id));
    batch.put(CF_LOCAL, LOCAL_CLUSTER_ID, encode_u64(cluster_id));
    db.write(batch, true)?;
    tracing::info!(member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"),
        "joining an existing cluster");
    Ok((member_id, cluster_id))
}
