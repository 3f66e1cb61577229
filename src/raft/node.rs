//! The raft node: one thread owning the raft-rs `RawNode`, running the Ready loop in raft-rs's
//! documented order.
//!
//! Inputs arrive on one channel ([`NodeMsg`]): proposals, ReadIndex requests, peer messages and log
//! compaction. Apply progress is read from [`RaftStatus::applied`] at every loop turn (apply does not
//! wake this thread for it). Committed entries are handed to the apply thread over a channel and never waited on, so a
//! slow apply or a slow client never stalls raft. Concurrent ReadIndex requests that arrive together
//! share one ReadIndex round.
//!
//! Invariants: entries and hard state are persisted (synced) before the Ready is advanced; messages that
//! must wait for persistence are sent only after it; raft is told an index is applied only after the
//! apply thread has written it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::eraftpb::{ConfChangeV2, ConfState, Entry, Message, Snapshot};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};
use tokio::sync::oneshot;

use super::network::Network;
use super::storage::RaftStorage;
use crate::error::{Error, Result};

/// What the node thread hands to the apply thread, in log order.
pub enum ApplyMsg {
    Entries(Vec<Entry>),
    /// Replace the state with a received snapshot; `done` is answered once it is installed.
    Snapshot {
        snapshot: Snapshot,
        done: mpsc::SyncSender<Result<()>>,
    },
}

/// Replication progress of one member, as the leader sees it.
#[derive(Debug, Clone)]
pub struct PeerProgress {
    pub id: u64,
    pub matched: u64,
    pub recent_active: bool,
    pub is_learner: bool,
    pub probing_or_snapshot: bool,
}

/// The leader's view of the group (None on a follower).
#[derive(Debug, Clone)]
pub struct GroupProgress {
    pub leader_last_index: u64,
    pub peers: Vec<PeerProgress>,
}

/// What the node thread is asked to do.
pub enum NodeMsg {
    /// Propose an entry; `id` is reported back through the drop callback if raft refuses it.
    Propose {
        id: u64,
        data: Vec<u8>,
    },
    /// Ask for a read index (answered with the commit index confirmed by a quorum).
    ReadIndex(oneshot::Sender<Result<u64>>),
    /// Applied state up to this index is durable: the log may be compacted behind it.
    CompactLog(u64),
    /// A message from a peer.
    Raft(Box<Message>),
    /// A peer could not be reached.
    Unreachable(u64),
    /// A snapshot send to a peer ended.
    SnapshotStatus {
        to: u64,
        ok: bool,
    },
    /// Propose a membership change; `context` is carried in the entry for apply.
    ProposeConfChange {
        id: u64,
        context: Vec<u8>,
        cc: ConfChangeV2,
    },
    /// Apply a committed membership change (from the apply thread) and return the new conf state.
    ApplyConfChange {
        cc: ConfChangeV2,
        reply: mpsc::SyncSender<ConfState>,
    },
    /// Hand leadership to another voter.
    TransferLeader(u64),
    /// The leader's replication progress.
    Progress(oneshot::Sender<Option<GroupProgress>>),
    Shutdown,
}

/// Live raft facts shared with the API layer.
pub struct RaftStatus {
    pub leader: AtomicU64,
    pub term: AtomicU64,
    pub commit: AtomicU64,
    /// Written by apply once an index is applied (written); raft learns it at its next loop turn.
    pub applied: AtomicU64,
    pub is_learner: std::sync::atomic::AtomicBool,
    /// This member is no longer in the configuration.
    pub removed: std::sync::atomic::AtomicBool,
    /// How many times this member saw a new leader (etcd's `etcd_server_leader_changes_seen_total`).
    pub leader_changes: prometheus::IntCounter,
    /// The index of the last snapshot from the leader that apply installed (0: none yet).
    pub installed_snapshot: AtomicU64,
    /// When this member last became leader (None while it is not): leases set before that moment
    /// are extended by the new leader, leases set after it are not (see `Lessor::promote`).
    pub leading_since: parking_lot::Mutex<Option<Instant>>,
}

impl Default for RaftStatus {
    fn default() -> Self {
        RaftStatus {
            leader: AtomicU64::new(0),
            term: AtomicU64::new(0),
            commit: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            is_learner: Default::default(),
            removed: Default::default(),
            leader_changes: crate::metrics::counter(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            leading_since: Default::default(),
            installed_snapshot: AtomicU64::new(0),
        }
    }
}

impl RaftStatus {
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }
    pub fn commit(&self) -> u64 {
        self.commit.load(Ordering::Acquire)
    }
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
    /// Records that everything up to `index` is applied (called by apply only).
    pub fn set_applied(&self, index: u64) {
        self.applied.fetch_max(index, Ordering::AcqRel);
    }
    pub fn is_learner(&self) -> bool {
        self.is_learner.load(Ordering::Acquire)
    }
    pub fn removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }
    /// When this member became leader, if it leads.
    pub fn leading_since(&self) -> Option<Instant> {
        *self.leading_since.lock()
    }
}

/// How long a ReadIndex round may go unanswered before its readers join a new round (etcd's
/// readIndexRetryTime). A round that raft dropped (a leader lost, a message lost) is not reported,
/// so without a retry its readers would wait for the whole request timeout.
const READ_INDEX_RETRY: Duration = Duration::from_millis(500);

/// Node settings.
pub struct NodeConfig {
    pub id: u64,
    pub heartbeat: Duration,
    pub election_ticks: usize,
    pub applied: u64,
}

/// Handle used by the rest of the server to talk to the node thread.
#[derive(Clone)]
pub struct RaftHandle {
    tx: mpsc::Sender<NodeMsg>,
    pub status: Arc<RaftStatus>,
}

impl RaftHandle {
    pub fn send(&self, msg: NodeMsg) -> Result<()> {
        self.tx.send(msg).map_err(|_| Error::Stopped)
    }

    /// A handle with no node thread behind it: the test reads what is sent to the node.
    #[cfg(test)]
    pub fn detached() -> (RaftHandle, mpsc::Receiver<NodeMsg>) {
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(RaftStatus::default());
        (RaftHandle { tx, status }, rx)
    }
}

type DropFn = Box<dyn Fn(u64, Error) + Send>;
type ReadWaiter = oneshot::Sender<Result<u64>>;

struct Node {
    raw: RawNode<RaftStorage>,
    storage: RaftStorage,
    status: Arc<RaftStatus>,
    apply_tx: mpsc::Sender<ApplyMsg>,
    on_drop: DropFn,
    transport: Arc<dyn Network>,
    id: u64,
    pending_reads: Vec<ReadWaiter>,
    /// Messages that arrived while a snapshot install was waited for, handled at the next turn.
    deferred: std::collections::VecDeque<NodeMsg>,
    inflight_reads: HashMap<Vec<u8>, (Instant, Vec<ReadWaiter>)>,
    read_seq: u64,
}

/// Starts the node thread. `on_drop` is called for proposals raft refuses (e.g. no leader).
pub fn start(
    cfg: NodeConfig,
    storage: RaftStorage,
    logger: &slog::Logger,
    apply_tx: mpsc::Sender<ApplyMsg>,
    on_drop: DropFn,
    transport: Arc<dyn Network>,
) -> Result<(RaftHandle, std::thread::JoinHandle<()>)> {
    let rc = raft::Config {
        id: cfg.id,
        election_tick: cfg.election_ticks.max(2),
        heartbeat_tick: 1,
        applied: cfg.applied,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        pre_vote: true,
        check_quorum: true,
        // Proposals handled in one loop turn go to each follower as one append, not one each.
        batch_append: true,
        ..Default::default()
    };
    let mut raw = RawNode::new(&rc, storage.clone(), logger)
        .map_err(|e| Error::Internal(format!("raft: {e}")))?;
    let voters = raw
        .raft
        .prs()
        .conf()
        .voters()
        .ids()
        .iter()
        .collect::<Vec<_>>();
    if voters == [cfg.id] && raw.raft.state != StateRole::Leader {
        // A single voter need not wait an election timeout to lead.
        raw.campaign()
            .map_err(|e| Error::Internal(format!("raft campaign: {e}")))?;
    }
    let (tx, rx) = mpsc::channel();
    let sink_tx = tx.clone();
    transport.set_node(Arc::new(move |m| {
        let _ = sink_tx.send(m);
    }));
    let status = Arc::new(RaftStatus::default());
    status.applied.store(cfg.applied, Ordering::Release);
    let mut node = Node {
        raw,
        storage,
        status: status.clone(),
        apply_tx,
        on_drop,
        transport,
        id: cfg.id,
        pending_reads: Vec::new(),
        deferred: std::collections::VecDeque::new(),
        inflight_reads: HashMap::new(),
        read_seq: 0,
    };
    let heartbeat = cfg.heartbeat;
    let join = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || node.run(rx, heartbeat))
        .map_err(|e| Error::Internal(format!("spawn raft thread: {e}")))?;
    Ok((RaftHandle { tx, status }, join))
}

impl Node {
    fn run(&mut self, rx: mpsc::Receiver<NodeMsg>, heartbeat: Duration) {
        let mut next_tick = Instant::now() + heartbeat;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let msg = rx.recv_timeout(wait);
            // Apply progress first: a membership proposal is checked against it.
            let applied = self.status.applied();
            if applied > self.raw.raft.raft_log.applied {
                self.raw.advance_apply_to(applied);
            }
            while let Some(m) = self.deferred.pop_front() {
                if matches!(m, NodeMsg::Shutdown) {
                    return;
                }
                self.handle(m);
            }
            match msg {
                Ok(NodeMsg::Shutdown) => return,
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Take whatever else is queued so that one Ready (one fsync) covers it.
            for _ in 0..4096 {
                match rx.try_recv() {
                    Ok(NodeMsg::Shutdown) => return,
                    Ok(m) => self.handle(m),
                    Err(_) => break,
                }
            }
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick = Instant::now() + heartbeat;
                self.retry_reads();
            }
            self.issue_reads();
            if let Err(e) = self.on_ready(&rx) {
                // The log could not be persisted: continuing could lose acknowledged writes.
                tracing::error!(error = %e, "raft storage failure, stopping");
                std::process::exit(2);
            }
            self.publish_status();
        }
    }

    fn handle(&mut self, m: NodeMsg) {
        match m {
            NodeMsg::Propose { id, data } => {
                if let Err(e) = self.raw.propose(vec![], data) {
                    self.refused(id, e);
                }
            }
            NodeMsg::ReadIndex(tx) => self.pending_reads.push(tx),
            NodeMsg::CompactLog(index) => {
                let started = Instant::now();
                match self.storage.compact(index) {
                    Ok(()) => tracing::info!(
                        index,
                        took_ms = started.elapsed().as_millis() as u64,
                        "compacted the raft log"
                    ),
                    Err(e) => tracing::warn!(error = %e, index, "raft log compaction failed"),
                }
            }
            NodeMsg::Raft(m) => {
                if let Err(e) = self.raw.step(*m) {
                    tracing::debug!(error = %e, "raft message not stepped");
                }
            }
            NodeMsg::Unreachable(id) => self.raw.report_unreachable(id),
            NodeMsg::SnapshotStatus { to, ok } => {
                let st = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, st);
            }
            NodeMsg::ProposeConfChange { id, context, cc } => {
                if let Err(e) = self.raw.propose_conf_change(context, cc) {
                    self.refused(id, e);
                }
            }
            NodeMsg::ApplyConfChange { cc, reply } => {
                let cs = match self.raw.apply_conf_change(&cc) {
                    Ok(cs) => cs,
                    Err(e) => {
                        tracing::warn!(error = %e, "conf change not applied");
                        self.raw.raft.prs().conf().to_conf_state()
                    }
                };
                let ids = cs.voters.iter().chain(cs.learners.iter());
                let present = ids.clone().any(|&i| i == self.id);
                self.status
                    .is_learner
                    .store(cs.learners.contains(&self.id), Ordering::Release);
                self.status.removed.store(!present, Ordering::Release);
                let _ = reply.send(cs);
            }
            NodeMsg::TransferLeader(to) => self.raw.transfer_leader(to),
            NodeMsg::Progress(reply) => {
                let _ = reply.send(self.progress());
            }
            NodeMsg::Shutdown => {}
        }
    }

    /// Tells the proposer that raft refused its proposal (it never entered the log).
    fn refused(&self, id: u64, e: raft::Error) {
        let err = match e {
            raft::Error::ProposalDropped if self.raw.raft.leader_id == 0 => Error::NoLeader,
            raft::Error::ProposalDropped => Error::LeaderChanged,
            other => Error::Internal(format!("raft refused a proposal: {other}")),
        };
        (self.on_drop)(id, err);
    }

    fn progress(&self) -> Option<GroupProgress> {
        let r = &self.raw.raft;
        if r.state != StateRole::Leader {
            return None;
        }
        let learners = r.prs().conf().learners().clone();
        let peers = r
            .prs()
            .iter()
            .map(|(id, pr)| PeerProgress {
                id: *id,
                matched: pr.matched,
                recent_active: pr.recent_active || *id == self.id,
                is_learner: learners.contains(id),
                probing_or_snapshot: pr.state != ProgressState::Replicate,
            })
            .collect();
        Some(GroupProgress {
            leader_last_index: r.raft_log.last_index(),
            peers,
        })
    }

    /// Starts one ReadIndex round for every read request queued since the last one.
    fn issue_reads(&mut self) {
        if self.pending_reads.is_empty() {
            return;
        }
        if self.raw.raft.leader_id == 0 {
            for tx in self.pending_reads.drain(..) {
                let _ = tx.send(Err(Error::NoLeader));
            }
            return;
        }
        // raft-rs drops a ReadIndex until the leader has committed an entry of its own term.
        let log = &self.raw.raft.raft_log;
        if self.raw.raft.state == StateRole::Leader
            && log.term(log.committed).ok() != Some(self.raw.raft.term)
        {
            return;
        }
        self.read_seq += 1;
        let ctx = self.read_seq.to_be_bytes().to_vec();
        let waiters = std::mem::take(&mut self.pending_reads);
        self.inflight_reads
            .insert(ctx.clone(), (Instant::now(), waiters));
        self.raw.read_index(ctx);
    }

    /// A round unanswered for `READ_INDEX_RETRY` is given up: its readers that still wait join the
    /// next round, which has a context of its own (a late answer to the old round is ignored). The
    /// readers' own deadline bounds the retries.
    fn retry_reads(&mut self) {
        let pending = &mut self.pending_reads;
        self.inflight_reads.retain(|_, (at, waiters)| {
            if at.elapsed() < READ_INDEX_RETRY {
                return true;
            }
            pending.extend(waiters.drain(..).filter(|tx| !tx.is_closed()));
            false
        });
    }

    /// Counts and logs a leader change in etcd's words (operators grep for them).
    fn leader_changed(&self, before: u64, now: u64, term: u64) {
        let me = self.id;
        if now != 0 {
            self.status.leader_changes.inc();
            tracing::info!("raft.node: {me:x} elected leader {now:x} at term {term}");
        } else {
            tracing::info!("raft.node: {me:x} lost leader {before:x} at term {term}");
        }
        let mut since = self.status.leading_since.lock();
        if now == me {
            *since = Some(Instant::now());
        } else {
            *since = None;
        }
    }

    fn send_messages(&mut self, msgs: Vec<Message>) {
        self.transport.send(msgs);
    }

    fn hand_to_apply(&mut self, entries: Vec<Entry>) {
        if !entries.is_empty() && self.apply_tx.send(ApplyMsg::Entries(entries)).is_err() {
            tracing::error!("apply thread is gone");
        }
    }

    /// Installs a snapshot from the leader: apply replaces the state (in order with the entries
    /// before it), then the log restarts after the snapshot index.
    ///
    /// While it waits, it still applies conf changes: apply may be working through committed
    /// entries before the snapshot and block on one of them (`ApplyConfChange`), and waiting for
    /// apply without answering it would deadlock the two threads. Every other message waits for the
    /// next loop turn, in arrival order.
    fn install_snapshot(&mut self, snapshot: Snapshot, rx: &mpsc::Receiver<NodeMsg>) -> Result<()> {
        let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
        let (done, wait) = mpsc::sync_channel(1);
        self.apply_tx
            .send(ApplyMsg::Snapshot { snapshot, done })
            .map_err(|_| Error::Stopped)?;
        loop {
            match wait.recv_timeout(Duration::from_millis(5)) {
                Ok(r) => {
                    r?;
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => return Err(Error::Stopped),
                Err(RecvTimeoutError::Timeout) => {}
            }
            while let Ok(m) = rx.try_recv() {
                match m {
                    m @ NodeMsg::ApplyConfChange { .. } => self.handle(m),
                    other => self.deferred.push_back(other),
                }
            }
        }
        self.storage.restore_to(index, term)?;
        let cs = self.raw.raft.prs().conf().to_conf_state();
        self.status
            .is_learner
            .store(cs.learners.contains(&self.id), Ordering::Release);
        tracing::info!(index, term, "installed snapshot from the leader");
        Ok(())
    }

    fn on_ready(&mut self, rx: &mpsc::Receiver<NodeMsg>) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        // 1. Messages a leader may send before persisting.
        let msgs = rd.take_messages();
        self.send_messages(msgs);
        // 2. Snapshot from the leader.
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.install_snapshot(snap, rx)?;
        }
        // 3. Read states answer ReadIndex rounds.
        for rs in rd.take_read_states() {
            if let Some((_, waiters)) = self.inflight_reads.remove(&rs.request_ctx) {
                for tx in waiters {
                    let _ = tx.send(Ok(rs.index));
                }
            }
        }
        // 4. Committed entries go to apply, without waiting for it.
        let committed = rd.take_committed_entries();
        self.hand_to_apply(committed);
        // 5. Persist entries and hard state.
        let sync = rd.must_sync();
        self.storage.append(rd.entries(), rd.hs(), sync)?;
        // 6. Messages that needed the persisted state.
        let msgs = rd.take_persisted_messages();
        self.send_messages(msgs);
        // 7. Advance; the light ready carries the new commit index and what it committed.
        let mut light = self.raw.advance_append(rd);
        if let Some(commit) = light.commit_index() {
            self.storage.set_commit(commit);
        }
        let msgs = light.take_messages();
        self.send_messages(msgs);
        let committed = light.take_committed_entries();
        self.hand_to_apply(committed);
        Ok(())
    }

    fn publish_status(&self) {
        let r = &self.raw.raft;
        let before = self.status.leader.swap(r.leader_id, Ordering::AcqRel);
        if r.leader_id != before {
            self.leader_changed(before, r.leader_id, r.term);
        }
        self.status.term.store(r.term, Ordering::Release);
        self.status
            .commit
            .store(r.raft_log.committed, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{MessageType, SnapshotMetadata};

    /// Member 1 of {1, 2}; the test plays member 2 (the leader) and the apply thread.
    struct Rig {
        handle: RaftHandle,
        apply_rx: mpsc::Receiver<ApplyMsg>,
        _rt: tokio::runtime::Runtime,
        _dir: tempfile::TempDir,
    }

    fn rig() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::storage::Rocks::open_log(dir.path()).unwrap();
        let state = crate::storage::Db::open(dir.path()).unwrap();
        let storage = RaftStorage::open(log, state, dir.path().join("snap")).unwrap();
        storage.bootstrap(vec![1, 2]).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let transport = Arc::new(crate::raft::transport::Transport::new(
            9,
            1,
            rt.handle().clone(),
            dir.path().join("snap"),
            Default::default(),
        ));
        let (apply_tx, apply_rx) = mpsc::channel();
        let cfg = NodeConfig {
            id: 1,
            heartbeat: Duration::from_millis(10),
            election_ticks: 1000,
            applied: 1,
        };
        let (handle, _join) = start(
            cfg,
            storage,
            &crate::raft::logger(),
            apply_tx,
            Box::new(|_, _| {}),
            transport,
        )
        .unwrap();
        Rig {
            handle,
            apply_rx,
            _rt: rt,
            _dir: dir,
        }
    }

    /// Apply blocks on a conf change (an entry before the snapshot) while the raft thread waits for
    /// apply to install the snapshot: the raft thread still answers the conf change.
    #[test]
    fn a_conf_change_is_answered_while_a_snapshot_install_is_waited_for() {
        let rig = rig();
        let cs = ConfState {
            voters: vec![1, 2],
            ..Default::default()
        };
        let mut meta = SnapshotMetadata {
            index: 10,
            term: 2,
            ..Default::default()
        };
        meta.set_conf_state(cs);
        let mut snap = Snapshot::default();
        snap.set_metadata(meta);
        snap.set_data(b"unused".to_vec().into());
        let mut m = Message {
            from: 2,
            to: 1,
            term: 2,
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgSnapshot);
        m.set_snapshot(snap);
        rig.handle.send(NodeMsg::Raft(Box::new(m))).unwrap();
        let done = loop {
            match rig.apply_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(ApplyMsg::Snapshot { done, .. }) => break done,
                Ok(ApplyMsg::Entries(_)) => continue,
                Err(e) => panic!("no snapshot reached apply: {e}"),
            }
        };
        // The raft thread now waits for `done`; apply asks it to apply a conf change first.
        let (reply, answer) = mpsc::sync_channel(1);
        rig.handle
            .send(NodeMsg::ApplyConfChange {
                cc: ConfChangeV2::default(),
                reply,
            })
            .unwrap();
        let cs = answer
            .recv_timeout(Duration::from_secs(5))
            .expect("the raft thread answered the conf change while waiting for the install");
        assert_eq!(cs.voters, vec![1, 2]);
        done.send(Ok(())).unwrap();
        // And the node goes on: it answers a progress request after the install.
        let (tx, rx) = oneshot::channel();
        rig.handle.send(NodeMsg::Progress(tx)).unwrap();
        assert!(
            rx.blocking_recv().unwrap().is_none(),
            "member 1 follows member 2"
        );
        rig.handle.send(NodeMsg::Shutdown).unwrap();
    }
}
