//! Apply: committed raft entries become state changes, in log order, on one thread.
//!
//! Each batch of committed entries is applied into one MVCC [`WriteBatch`], which also carries the applied
//! raft index; then the batch is written, readers see the new revision, and the results go to the
//! handlers waiting on this member. Membership changes are applied to raft (through the node thread) and
//! to the members column family in the same batch as the conf state. A snapshot from the leader replaces
//! the state, in order with the entries before it. Apply is deterministic: it reads nothing but the log
//! and the state.
//!
//! Invariants: an entry at or below the stored applied index is skipped (replay after a crash is
//! idempotent); waiters are woken only after the write that holds their result; the raft log is
//! compacted only behind applied state that was synced first; an entry that changes a member record
//! ends its write, so the entries after it read that change (members are read from the database), and
//! the outcome of an entry never depends on how entries were batched.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use prost::Message;
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, Entry, EntryType};
use tokio::sync::watch;

use crate::alarm::{AlarmSet, AlarmView};
use crate::cluster::{delete_member, get_member, list_members, put_member};
use crate::error::{Error, Result};
use crate::lease::Lessor;
use crate::mvcc::compact::Compactor;
use crate::mvcc::txn::run_txn;
use crate::mvcc::watch::WatchHub;
use crate::mvcc::{KvWrite, Store, WriteBatch};
use crate::proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, ResponseHeader, TxnResponse,
};
use crate::proto::metastorepb::{
    internal_request::Request, member_change::Kind, InternalRequest, MemberChange, MemberRecord,
};
use crate::raft::network::Network;
use crate::raft::propose::Wait;
use crate::raft::{ApplyMsg, NodeMsg, RaftHandle};
use crate::storage::{checkpoint, encode_u64, CF_META, META_ALARMS, META_CONF_STATE};

pub use crate::storage::{META_APPLIED_INDEX, META_APPLIED_TERM};

/// What an applied request produced.
#[derive(Debug)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// A compaction was scheduled at `revision`; `header.revision` is the current revision.
    Compact {
        resp: CompactionResponse,
        revision: i64,
    },
    /// A membership request was applied.
    Member,
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    /// An Alarm request; the header is left to the API layer.
    Alarm(AlarmResponse),
}

pub type ApplyResult = Result<Applied>;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// The apply thread's state.
pub struct Applier {
    pub store: Store,
    pub waits: Arc<Wait<ApplyResult>>,
    pub compactor: Compactor,
    /// Told about every batch's events once they are visible, and about snapshot installs.
    pub watch_hub: WatchHub,
    pub raft: RaftHandle,
    pub transport: Arc<dyn Network>,
    pub lessor: Arc<Lessor>,
    pub applied_tx: watch::Sender<u64>,
    pub snapshot_count: u64,
    /// Raft entries kept behind the applied index when the log is compacted (for slow followers).
    pub catchup_entries: u64,
    pub applied: u64,
    pub last_log_compaction: u64,
    /// The active alarms as of `applied` (apply's own copy, changed entry by entry).
    pub alarms: AlarmSet,
    /// Where the alarms are published once written.
    pub alarm_view: AlarmView,
}

impl Applier {
    /// Runs until the node thread hangs up.
    pub fn run(mut self, rx: mpsc::Receiver<ApplyMsg>) {
        let mut next: Option<ApplyMsg> = None;
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                },
            };
            let r = match msg {
                ApplyMsg::Entries(mut entries) => {
                    // Coalesce what is already queued into one write.
                    while entries.len() < 4096 {
                        match rx.try_recv() {
                            Ok(ApplyMsg::Entries(more)) => entries.extend(more),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.apply_batch(entries)
                }
                ApplyMsg::Snapshot { snapshot, done } => {
                    let dir =
                        PathBuf::from(String::from_utf8_lossy(snapshot.get_data()).to_string());
                    let r = self.install(&dir, snapshot.get_metadata().index);
                    let _ = done.send(r.clone());
                    r
                }
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "apply failed, stopping");
                std::process::exit(2);
            }
        }
    }

    fn install(&mut self, dir: &std::path::Path, index: u64) -> Result<()> {
        if index > self.applied {
            checkpoint::install(self.store.db(), dir)?;
            self.store.reload()?;
            self.watch_hub.store_jumped();
            self.lessor.reload(self.store.db())?;
            self.applied = index;
            self.last_log_compaction = index;
            self.compactor.schedule(self.store.compact_revision());
            self.refresh_peers()?;
            self.alarms = AlarmSet::load(self.store.db())?;
            self.alarm_view.publish(&self.alarms);
            self.applied_tx.send_replace(index);
            self.raft.status.set_applied(index);
            self.raft
                .status
                .installed_snapshot
                .store(index, std::sync::atomic::Ordering::Release);
        }
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }

    fn refresh_peers(&self) -> Result<()> {
        let members = list_members(self.store.db())?;
        let peers: Vec<(u64, Vec<String>)> =
            members.into_iter().map(|m| (m.id, m.peer_ur_ls)).collect();
        self.transport.set_peers(&peers);
        Ok(())
    }

    /// Applies committed entries in as few writes as membership allows.
    fn apply_batch(&mut self, entries: Vec<Entry>) -> Result<()> {
        let mut rest = &entries[..];
        while !rest.is_empty() {
            let taken = self.apply_run(rest)?;
            rest = &rest[taken..];
        }
        Ok(())
    }

    /// Applies a prefix of `entries` in one write and returns its length. The prefix ends after the
    /// first entry that changes a member record: membership is read from the database, not from the
    /// batch, so an entry reading members must see every earlier change written. Without the cut,
    /// how entries happened to be batched on a member would decide whether, say, a new member's
    /// published name finds its record, and members would disagree.
    fn apply_run(&mut self, entries: &[Entry]) -> Result<usize> {
        let mut taken = 0;
        let mut wb = WriteBatch::new(&self.store);
        let mut results = Vec::new();
        let mut members_changed = false;
        // Lease changes to tell the lessor once they are written: (id, Some(ttl)) or (id, None).
        let mut lease_changes: Vec<(i64, Option<i64>)> = Vec::new();
        let mut member_record_changed = false;
        let mut alarms_changed = false;
        for e in entries {
            taken += 1;
            if e.index <= self.applied {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    if e.data.is_empty() {
                        continue;
                    }
                    let req = InternalRequest::decode(e.data.as_ref())?;
                    match req.request {
                        Some(Request::MemberUpdate(_)) => {
                            members_changed = true;
                            member_record_changed = true;
                        }
                        Some(Request::MemberAttributes(_)) => member_record_changed = true,
                        _ => {}
                    }
                    let revoking = match &req.request {
                        Some(Request::LeaseRevoke(r)) => Some(r.id),
                        _ => None,
                    };
                    let result = match req.request {
                        Some(Request::Alarm(a)) => {
                            let (resp, changed) = self.alarms.apply(&a);
                            alarms_changed |= changed;
                            Ok(Applied::Alarm(resp))
                        }
                        other => match other.as_ref().and_then(|r| self.alarms.refusal(r)) {
                            Some(refused) => Err(refused),
                            None => self.apply_one(&mut wb, other),
                        },
                    };
                    let result = stop_on_fault(e.index, result)?;
                    match (&result, revoking) {
                        (Ok(Applied::LeaseGrant(g)), _) => lease_changes.push((g.id, Some(g.ttl))),
                        (Ok(Applied::LeaseRevoke(_)), Some(id)) => lease_changes.push((id, None)),
                        _ => {}
                    }
                    results.push((req.id, result));
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(e.data.as_ref())
                        .map_err(|err| Error::Internal(format!("conf change: {err}")))?;
                    let ctx = if e.context.is_empty() {
                        None
                    } else {
                        Some(InternalRequest::decode(e.context.as_ref())?)
                    };
                    let id = ctx.as_ref().map(|c| c.id);
                    let change = ctx.and_then(|c| match c.request {
                        Some(Request::MemberChange(m)) => Some(m),
                        _ => None,
                    });
                    let result =
                        stop_on_fault(e.index, self.apply_conf_change(&mut wb, cc, change))?;
                    members_changed = true;
                    member_record_changed = true;
                    if let Some(id) = id {
                        results.push((id, result));
                    }
                }
                EntryType::EntryConfChange => {
                    tracing::warn!(index = e.index, "ignoring a v1 conf change entry");
                }
            }
            if member_record_changed {
                break;
            }
        }
        let Some(last) = entries[..taken].last() else {
            return Ok(taken);
        };
        let (last_index, last_term) = (last.index, last.term);
        if last_index <= self.applied {
            return Ok(taken);
        }
        let mut meta = vec![
            (META_APPLIED_INDEX, encode_u64(last_index).to_vec()),
            (META_APPLIED_TERM, encode_u64(last_term).to_vec()),
        ];
        if alarms_changed {
            meta.push((META_ALARMS, self.alarms.encode()));
        }
        let (rev, events, compaction) = wb.finish(&meta)?;
        if alarms_changed {
            self.alarm_view.publish(&self.alarms);
        }
        self.watch_hub.notify(rev, events);
        self.applied = last_index;
        for (id, change) in lease_changes {
            match change {
                Some(ttl) => self.lessor.granted(id, ttl),
                None => self.lessor.revoked(id),
            }
        }
        if let Some(rev) = compaction {
            self.compactor.schedule(rev);
        }
        if members_changed {
            self.refresh_peers()?;
        }
        self.applied_tx.send_replace(last_index);
        for (id, r) in results {
            self.waits.trigger(id, r);
        }
        self.raft.status.set_applied(last_index);
        if last_index >= self.last_log_compaction + self.snapshot_count.max(1) {
            let started = std::time::Instant::now();
            self.store.db().sync()?;
            tracing::info!(
                applied = last_index,
                sync_ms = started.elapsed().as_millis() as u64,
                "applied state synced, compacting the raft log"
            );
            self.last_log_compaction = last_index;
            let _ = self.raft.send(NodeMsg::CompactLog(
                last_index.saturating_sub(self.catchup_entries),
            ));
        }
        Ok(taken)
    }

    /// Checks a membership change against the members, applies it to raft and records it.
    fn apply_conf_change(
        &self,
        wb: &mut WriteBatch<'_>,
        cc: ConfChangeV2,
        change: Option<MemberChange>,
    ) -> ApplyResult {
        let db = self.store.db().clone();
        if let Some(ch) = &change {
            let m = ch.member.clone().unwrap_or_default();
            let existing = get_member(&db, m.id)?;
            match ch.kind() {
                Kind::Add => {
                    if existing.is_some() {
                        return Err(Error::MemberExists);
                    }
                    let all = list_members(&db)?;
                    if all
                        .iter()
                        .any(|o| o.peer_ur_ls.iter().any(|u| m.peer_urls.contains(u)))
                    {
                        return Err(Error::PeerUrlExists);
                    }
                }
                Kind::Remove => {
                    if existing.is_none() {
                        return Err(Error::MemberNotFound);
                    }
                }
                Kind::Promote => match &existing {
                    None => return Err(Error::MemberNotFound),
                    Some(e) if !e.is_learner => return Err(Error::NotLearner),
                    Some(_) => {}
                },
                Kind::Update => {}
            }
        }
        let (reply, wait) = mpsc::sync_channel(1);
        self.raft
            .send(NodeMsg::ApplyConfChange { cc, reply })
            .map_err(|_| Error::Stopped)?;
        let cs = wait.recv().map_err(|_| Error::Stopped)?;
        wb.raw().put(
            CF_META,
            META_CONF_STATE,
            cs.write_to_bytes()
                .map_err(|e| Error::Internal(format!("conf state: {e}")))?,
        );
        if let Some(ch) = change {
            let m = ch.member.clone().unwrap_or_default();
            match ch.kind() {
                Kind::Add => put_member(wb.raw(), &m),
                Kind::Remove => delete_member(wb.raw(), m.id),
                Kind::Promote => {
                    if let Some(mut e) = get_member(&db, m.id)? {
                        e.is_learner = false;
                        put_member(wb.raw(), &e);
                    }
                }
                Kind::Update => {}
            }
        }
        Ok(Applied::Member)
    }

    fn apply_one(&self, wb: &mut WriteBatch<'_>, req: Option<Request>) -> ApplyResult {
        let Some(req) = req else {
            return Err(Error::Internal("empty internal request".into()));
        };
        match req {
            Request::Put(p) => {
                test_panic_point(&p.key);
                let r = wb.put(&p);
                let rev = wb.end_txn();
                r.map(|mut r| {
                    r.header = header(rev);
                    Applied::Put(r)
                })
            }
            Request::DeleteRange(d) => {
                let r = wb.delete_range(&d);
                let rev = wb.end_txn();
                r.map(|mut r| {
                    r.header = header(rev);
                    Applied::DeleteRange(r)
                })
            }
            Request::Txn(t) => {
                let r = run_txn(wb, &t);
                wb.end_txn();
                r.map(Applied::Txn)
            }
            Request::Compaction(c) => {
                let current = wb.compact(&c)?;
                Ok(Applied::Compact {
                    resp: CompactionResponse {
                        header: header(current),
                    },
                    revision: c.revision,
                })
            }
            Request::MemberAttributes(a) => {
                let db = self.store.db().clone();
                let Some(mut m) = get_member(&db, a.member_id)? else {
                    return Err(Error::MemberNotFound);
                };
                m.name = a.name;
                m.client_urls = a.client_urls;
                put_member(wb.raw(), &m);
                Ok(Applied::Member)
            }
            Request::MemberUpdate(u) => {
                let db = self.store.db().clone();
                let want = u.member.unwrap_or_default();
                let Some(mut m) = get_member(&db, want.id)? else {
                    return Err(Error::MemberNotFound);
                };
                let all = list_members(&db)?;
                if all.iter().any(|o| {
                    o.id != want.id && o.peer_ur_ls.iter().any(|p| want.peer_urls.contains(p))
                }) {
                    return Err(Error::PeerUrlExists);
                }
                m.peer_urls = want.peer_urls;
                put_member(wb.raw(), &MemberRecord { ..m });
                Ok(Applied::Member)
            }
            Request::LeaseGrant(g) => {
                wb.lease_grant(g.id, g.ttl)?;
                Ok(Applied::LeaseGrant(LeaseGrantResponse {
                    header: header(wb.end_txn()),
                    id: g.id,
                    ttl: g.ttl,
                    error: String::new(),
                }))
            }
            Request::LeaseRevoke(r) => {
                let rev = wb.lease_revoke(r.id)?;
                Ok(Applied::LeaseRevoke(LeaseRevokeResponse {
                    header: header(rev),
                }))
            }
            Request::MemberChange(_) => Err(Error::Internal(
                "a member change outside a conf change entry".into(),
            )),
            Request::Alarm(_) => Err(Error::Internal("an alarm request outside apply_run".into())),
        }
    }
}

/// The key whose put makes the apply thread panic in debug builds run with `METASTORE_TEST_PANIC`
/// set: how the tests check that a panic on an internal thread stops the process. Release builds
/// have no such point.
pub const TEST_PANIC_KEY: &[u8] = b"\0metastore-test-panic";

#[cfg(debug_assertions)]
fn test_panic_point(key: &[u8]) {
    if key == TEST_PANIC_KEY && std::env::var_os("METASTORE_TEST_PANIC").is_some() {
        panic!("METASTORE_TEST_PANIC: panicking on the apply thread as asked");
    }
}

#[cfg(not(debug_assertions))]
fn test_panic_point(_: &[u8]) {}

/// An entry's outcome as the client gets it, or the fault that must stop the member: a storage or
/// internal error is not an answer, it means this member could not apply the entry as the others
/// did, and recording it as applied would let the member diverge silently (etcd panics on backend
/// errors). The member stops without writing the batch; after a restart the entry is applied again.
fn stop_on_fault(index: u64, result: ApplyResult) -> Result<ApplyResult> {
    match result {
        Err(e @ (Error::Storage(_) | Error::Internal(_) | Error::Stopped)) => {
            tracing::error!(index, error = %e, "applying a committed entry failed");
            Err(e)
        }
        other => Ok(other),
    }
}

/// The applied index stored with the data (0 on a fresh data dir).
pub fn stored_applied_index(store: &Store) -> Result<u64> {
    store.db().get_u64(CF_META, META_APPLIED_INDEX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::metastorepb::{MemberAttributes, MemberChange};
    use crate::storage::{Batch, Db, CF_MEMBERS};
    use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfState};

    /// An applier over a fresh data dir with member 1, whose raft side answers conf changes by
    /// adding the changed node to the voters.
    struct Rig {
        applier: Applier,
        waits: Arc<Wait<ApplyResult>>,
        db: Db,
        _rt: tokio::runtime::Runtime,
        _dir: tempfile::TempDir,
    }

    fn rig() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        // Apply depends only on the storage seam: its tests run on the memory engine.
        let db = Db::memory();
        let mut b = Batch::new();
        let first = MemberRecord {
            id: 1,
            name: "m1".into(),
            peer_urls: vec!["http://127.0.0.1:1".into()],
            ..Default::default()
        };
        put_member(&mut b, &first);
        db.write(b, true).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (raft, node_rx) = RaftHandle::detached();
        std::thread::spawn(move || {
            while let Ok(m) = node_rx.recv() {
                if let NodeMsg::ApplyConfChange { cc, reply } = m {
                    let mut voters = vec![1];
                    voters.extend(cc.get_changes().iter().map(|c| c.node_id));
                    let _ = reply.send(ConfState {
                        voters,
                        ..Default::default()
                    });
                }
            }
        });
        let store = Store::open(db.clone()).unwrap();
        let waits: Arc<Wait<ApplyResult>> = Arc::new(Wait::default());
        let applier = Applier {
            store: store.clone(),
            waits: waits.clone(),
            compactor: Compactor::start(db.clone()).unwrap(),
            watch_hub: WatchHub::new(store).unwrap(),
            raft,
            transport: Arc::new(crate::raft::network::MemNetwork::new().link(1, dir.path())),
            lessor: Arc::new(Lessor::load(&db).unwrap()),
            applied_tx: watch::channel(0).0,
            snapshot_count: 1_000_000,
            catchup_entries: 0,
            applied: 1,
            last_log_compaction: 1,
            alarms: AlarmSet::default(),
            alarm_view: AlarmView::default(),
        };
        Rig {
            applier,
            waits,
            db,
            _rt: rt,
            _dir: dir,
        }
    }

    /// Member 2 is added, then publishes its name: the two entries a joining member produces.
    fn add_then_publish() -> Vec<Entry> {
        let member = MemberRecord {
            id: 2,
            peer_urls: vec!["http://127.0.0.1:2".into()],
            ..Default::default()
        };
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ConfChangeType::AddNode);
        single.node_id = 2;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        let mut add = Entry {
            index: 2,
            term: 1,
            data: cc.write_to_bytes().unwrap().into(),
            context: InternalRequest {
                id: 100,
                request: Some(Request::MemberChange(MemberChange {
                    kind: Kind::Add as i32,
                    member: Some(member),
                })),
            }
            .encode_to_vec()
            .into(),
            ..Default::default()
        };
        add.set_entry_type(EntryType::EntryConfChangeV2);
        let publish = Entry {
            index: 3,
            term: 1,
            data: InternalRequest {
                id: 101,
                request: Some(Request::MemberAttributes(MemberAttributes {
                    member_id: 2,
                    name: "m2".into(),
                    client_urls: vec!["http://127.0.0.1:3".into()],
                })),
            }
            .encode_to_vec()
            .into(),
            ..Default::default()
        };
        vec![add, publish]
    }

    fn outcome(r: ApplyResult) -> String {
        match r {
            Ok(a) => format!("{a:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    /// Whether entries arrive in one batch or one at a time, a member added by one entry is seen by
    /// the next: the outcomes and the stored state are the same (members must not diverge).
    #[test]
    fn a_member_change_is_visible_to_the_next_entry_of_the_same_batch() {
        let mut results = Vec::new();
        for together in [true, false] {
            let mut rig = rig();
            let (add, publish) = (rig.waits.register(100), rig.waits.register(101));
            let entries = add_then_publish();
            if together {
                rig.applier.apply_batch(entries).unwrap();
            } else {
                for e in entries {
                    rig.applier.apply_batch(vec![e]).unwrap();
                }
            }
            let add = outcome(add.blocking_recv().unwrap());
            let publish = outcome(publish.blocking_recv().unwrap());
            assert_eq!(add, "Member");
            assert_eq!(publish, "Member", "batched together: {together}");
            let m2 = get_member(&rig.db, 2).unwrap().unwrap();
            assert_eq!(m2.name, "m2");
            assert_eq!(m2.client_urls, vec!["http://127.0.0.1:3".to_string()]);
            assert_eq!(stored_applied_index(&rig.applier.store).unwrap(), 3);
            results.push((add, publish, m2));
        }
        assert_eq!(results[0], results[1]);
    }

    fn normal(index: u64, id: u64, request: Request) -> Entry {
        Entry {
            index,
            term: 1,
            data: InternalRequest {
                id,
                request: Some(request),
            }
            .encode_to_vec()
            .into(),
            ..Default::default()
        }
    }

    /// A storage or internal fault while applying an entry is not the client's answer: the batch
    /// fails (the member stops), nothing of it is written and the entry is not recorded as applied.
    #[test]
    fn a_fault_inside_an_entry_stops_apply_instead_of_answering() {
        let mut rig = rig();
        // Member 1's record no longer decodes: publishing its attributes cannot read it.
        let mut b = Batch::new();
        b.put(CF_MEMBERS, encode_u64(1), &b"\xff\xff"[..]);
        rig.db.write(b, true).unwrap();
        let put = Request::Put(crate::proto::etcdserverpb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        });
        let publish = Request::MemberAttributes(MemberAttributes {
            member_id: 1,
            name: "m1".into(),
            client_urls: vec![],
        });
        let waiting = rig.waits.register(301);
        let r = rig
            .applier
            .apply_batch(vec![normal(2, 300, put), normal(3, 301, publish)]);
        assert!(
            matches!(r, Err(Error::Internal(_))),
            "{r:?}: a fault must fail the batch"
        );
        assert_eq!(stored_applied_index(&rig.applier.store).unwrap(), 0);
        assert_eq!(rig.applier.store.current_revision(), 1);
        assert_eq!(rig.applier.applied, 1);
        // The waiter is never told a fault as if it were its answer.
        let mut waiting = waiting;
        assert!(waiting.try_recv().is_err());
    }

    /// An alarm raised by one entry refuses the next entry of the same batch, is stored with the
    /// batch and published to the view; clearing it lets writes through again.
    #[test]
    fn an_alarm_applies_to_the_entries_after_it_and_is_stored() {
        use crate::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
        let mut rig = rig();
        let nospace = |action: AlarmAction| {
            Request::Alarm(AlarmRequest {
                action: action as i32,
                member_id: 1,
                alarm: AlarmType::Nospace as i32,
            })
        };
        let put = || {
            Request::Put(crate::proto::etcdserverpb::PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })
        };
        let waits: Vec<_> = (200..204).map(|id| rig.waits.register(id)).collect();
        rig.applier
            .apply_batch(vec![
                normal(2, 200, nospace(AlarmAction::Activate)),
                normal(3, 201, put()),
            ])
            .unwrap();
        let view = rig.applier.alarm_view.get();
        assert_eq!(view.len(), 1);
        assert_eq!(
            crate::alarm::describe(&view[0]),
            "memberID:1 alarm:NOSPACE "
        );
        assert_eq!(AlarmSet::load(&rig.db).unwrap(), rig.applier.alarms);
        rig.applier
            .apply_batch(vec![
                normal(4, 202, nospace(AlarmAction::Deactivate)),
                normal(5, 203, put()),
            ])
            .unwrap();
        let outcomes: Vec<String> = waits
            .into_iter()
            .map(|w| outcome(w.blocking_recv().unwrap()))
            .collect();
        assert!(outcomes[0].starts_with("Alarm("), "{}", outcomes[0]);
        assert_eq!(
            outcomes[1],
            "error: etcdserver: mvcc: database space exceeded"
        );
        assert!(outcomes[3].starts_with("Put("), "{}", outcomes[3]);
        assert!(rig.applier.alarm_view.get().is_empty());
        assert!(AlarmSet::load(&rig.db).unwrap().all().is_empty());
        assert_eq!(rig.applier.store.current_revision(), 2);
    }
}
