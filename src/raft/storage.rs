//! `raft::Storage` on RocksDB: the raft log (`raft_log` CF) and hard state (`raft_state` CF) in the log
//! database; the conf state is read from the state database, where apply writes it with the applied
//! index it belongs to.
//!
//! Only the raft node thread writes here; raft-rs reads through the trait. A cache keeps the log
//! bounds, the hard and conf state, the compaction point and the newest entries (the tail that raft
//! hands to apply and sends to followers in step) in memory, so the hot path reads no RocksDB.
//!
//! Invariants: appended entries and the hard state are written in one synced RocksDB write before the
//! Ready that carried them is advanced; the log is only compacted up to an index whose applied state
//! is durable (the caller syncs the WAL first); `first_index == snapshot index + 1`; the cached tail
//! is always a contiguous run of the log ending at `last`, equal to what RocksDB holds.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::error::{Error, Result};
use crate::storage::{
    decode_u64, encode_u64, Batch, Db, Read, Rocks, CF_META, CF_RAFT_LOG, CF_RAFT_STATE,
    META_APPLIED_INDEX, META_CONF_STATE,
};

const HARD_STATE: &[u8] = b"hard_state";
const SNAPSHOT_META: &[u8] = b"snapshot_meta";

/// Newest entries kept in memory (by count and by bytes, whichever is reached first).
const TAIL_MAX_ENTRIES: usize = 8192;
const TAIL_MAX_BYTES: usize = 32 << 20;

#[derive(Default)]
struct Cache {
    hard: HardState,
    conf: ConfState,
    snap_index: u64,
    snap_term: u64,
    last: u64,
    last_term: u64,
    /// The newest entries, contiguous, ending at `last` (may be empty).
    tail: VecDeque<Entry>,
    tail_bytes: usize,
}

impl Cache {
    /// The cached entry at `index`, if the tail holds it.
    fn cached(&self, index: u64) -> Option<&Entry> {
        let first = self.tail.front()?.index;
        if index < first {
            return None;
        }
        self.tail.get((index - first) as usize)
    }

    fn clear_tail(&mut self) {
        self.tail.clear();
        self.tail_bytes = 0;
    }

    /// Adds appended entries (the first may overwrite a conflicting suffix) and trims to the bounds.
    fn push_tail(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        match self.tail.front().map(|e| e.index) {
            Some(f) if first.index > f && first.index <= self.last + 1 => {
                while self.tail.back().is_some_and(|e| e.index >= first.index) {
                    if let Some(e) = self.tail.pop_back() {
                        self.tail_bytes -= e.data.len() + e.context.len();
                    }
                }
            }
            _ => self.clear_tail(),
        }
        for e in entries {
            self.tail_bytes += e.data.len() + e.context.len();
            self.tail.push_back(e.clone());
        }
        while self.tail.len() > TAIL_MAX_ENTRIES || self.tail_bytes > TAIL_MAX_BYTES {
            match self.tail.pop_front() {
                Some(e) => self.tail_bytes -= e.data.len() + e.context.len(),
                None => break,
            }
        }
    }

    /// Drops cached entries at or below `index` (compacted away).
    fn trim_tail_to(&mut self, index: u64) {
        while self.tail.front().is_some_and(|e| e.index <= index) {
            if let Some(e) = self.tail.pop_front() {
                self.tail_bytes -= e.data.len() + e.context.len();
            }
        }
    }
}

/// Checkpoints made for lagging peers.
#[derive(Default)]
struct Snapshots {
    ready: Option<Snapshot>,
    creating: bool,
    seq: u64,
}

/// The raft log and state of this member.
#[derive(Clone)]
pub struct RaftStorage {
    /// The raft log database.
    db: Rocks,
    /// The state database (conf state, applied index, checkpoints for snapshots).
    state: Db,
    cache: Arc<RwLock<Cache>>,
    snaps: Arc<Mutex<Snapshots>>,
    snap_dir: PathBuf,
    /// Durations of the log's synced writes (etcd's `etcd_disk_wal_fsync_duration_seconds`).
    wal_fsync: prometheus::Histogram,
}

fn pb_err(e: protobuf::ProtobufError) -> Error {
    Error::Internal(format!("raft state: {e}"))
}

fn to_raft(e: Error) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl RaftStorage {
    /// Loads the raft state from the log database `db` and the state database `state`.
    pub fn open(db: Rocks, state: Db, snap_dir: PathBuf) -> Result<RaftStorage> {
        let mut c = Cache::default();
        if let Some(b) = db.get(CF_RAFT_STATE, HARD_STATE)? {
            c.hard = HardState::parse_from_bytes(&b).map_err(pb_err)?;
        }
        if let Some(b) = state.get(CF_META, META_CONF_STATE)? {
            c.conf = ConfState::parse_from_bytes(&b).map_err(pb_err)?;
        }
        if let Some(b) = db.get(CF_RAFT_STATE, SNAPSHOT_META)? {
            c.snap_index = decode_u64(&b);
            c.snap_term = decode_u64(b.get(8..).unwrap_or(&[]));
        }
        c.last = c.snap_index;
        c.last_term = c.snap_term;
        let cf = db.cf(CF_RAFT_LOG)?;
        let mut it = db.raw().raw_iterator_cf(&cf);
        it.seek_to_last();
        if let Some(v) = it.value() {
            let e = Entry::parse_from_bytes(v).map_err(pb_err)?;
            c.last = e.index;
            c.last_term = e.term;
        }
        it.status()?;
        drop(it);
        drop(cf);
        // The commit index is persisted lazily (with the next hard state); everything applied was
        // committed, so a restart resumes from at least the applied index when the log holds it.
        let applied = state.get_u64(CF_META, META_APPLIED_INDEX)?;
        if applied > c.hard.commit && applied <= c.last {
            c.hard.commit = applied;
        }
        Ok(RaftStorage {
            db,
            state,
            cache: Arc::new(RwLock::new(c)),
            snaps: Arc::new(Mutex::new(Snapshots::default())),
            snap_dir,
            wal_fsync: crate::metrics::disk_histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            ),
        })
    }

    /// The histogram of the log's synced writes (one per Ready that needs a sync).
    pub fn wal_fsync(&self) -> &prometheus::Histogram {
        &self.wal_fsync
    }

    /// Makes the log start after `index` (state up to it came from a snapshot, or the log was lost
    /// behind durable applied state): drops every entry and moves the commit index up to `index`.
    pub fn restore_to(&self, index: u64, term: u64) -> Result<()> {
        let mut hard = self.cache.read().hard.clone();
        let log = self.db.cf(CF_RAFT_LOG)?;
        let state = self.db.cf(CF_RAFT_STATE)?;
        let mut b = rocksdb::WriteBatch::default();
        b.delete_range_cf(&log, encode_u64(0), encode_u64(u64::MAX));
        let mut meta = encode_u64(index).to_vec();
        meta.extend_from_slice(&encode_u64(term));
        b.put_cf(&state, SNAPSHOT_META, meta);
        if hard.commit < index {
            hard.commit = index;
        }
        if hard.term < term {
            hard.term = term;
        }
        b.put_cf(&state, HARD_STATE, hard.write_to_bytes().map_err(pb_err)?);
        drop((log, state));
        self.db.write_raw(b, true)?;
        let conf = match self.state.get(CF_META, META_CONF_STATE)? {
            Some(cs) => Some(ConfState::parse_from_bytes(&cs).map_err(pb_err)?),
            None => None,
        };
        let mut c = self.cache.write();
        c.hard = hard;
        if let Some(conf) = conf {
            c.conf = conf;
        }
        c.snap_index = index;
        c.snap_term = term;
        c.last = index;
        c.last_term = term;
        c.clear_tail();
        Ok(())
    }

    /// Makes the log agree with the applied state found at start-up, and says whether it had to.
    /// Applied state runs ahead of the log's start only after a snapshot install whose log restart
    /// ([`restore_to`](Self::restore_to)) a crash cut off. The log then ends before the applied
    /// index, or holds another term's entry there (a suffix the snapshot superseded, which raft would
    /// otherwise take as committed). Either way the log restarts after the applied index.
    pub fn reconcile_with_applied(&self, applied: u64, applied_term: u64) -> Result<bool> {
        let (snap_index, last) = {
            let c = self.cache.read();
            (c.snap_index, c.last)
        };
        if applied <= snap_index {
            return Ok(false);
        }
        let agrees = applied <= last
            && match raft::Storage::term(self, applied) {
                Ok(t) => applied_term == 0 || t == applied_term,
                Err(_) => false,
            };
        if agrees {
            return Ok(false);
        }
        self.restore_to(applied, applied_term)?;
        Ok(true)
    }

    /// The index and term of the last snapshot (or compaction point).
    pub fn snapshot_point(&self) -> (u64, u64) {
        let c = self.cache.read();
        (c.snap_index, c.snap_term)
    }

    /// Creates a checkpoint in the background; `snapshot()` returns it once ready.
    fn start_checkpoint(&self) {
        let mut s = self.snaps.lock();
        if s.creating {
            return;
        }
        s.creating = true;
        s.seq += 1;
        let seq = s.seq;
        drop(s);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                let r = me.make_checkpoint(seq);
                let mut s = me.snaps.lock();
                s.creating = false;
                match r {
                    Ok(snap) => {
                        let old = s.ready.replace(snap);
                        drop(s);
                        if let Some(old) = old {
                            let dir = String::from_utf8_lossy(old.get_data()).to_string();
                            let _ = std::fs::remove_dir_all(dir);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "creating a checkpoint failed"),
                }
            });
        if spawned.is_err() {
            self.snaps.lock().creating = false;
        }
    }

    fn make_checkpoint(&self, seq: u64) -> Result<Snapshot> {
        std::fs::create_dir_all(&self.snap_dir)
            .map_err(|e| Error::Storage(format!("create {}: {e}", self.snap_dir.display())))?;
        let dir = self.snap_dir.join(format!("checkpoint-{seq}"));
        let _ = std::fs::remove_dir_all(&dir);
        crate::storage::checkpoint::create(&self.state, &dir)?;
        let cp = crate::storage::checkpoint::open(&self.state, &dir)?;
        let get = |cf: crate::storage::Cf, k: &[u8]| cp.get(cf, k);
        let index = get(crate::storage::CF_META, crate::storage::META_APPLIED_INDEX)?
            .map(|v| decode_u64(&v))
            .unwrap_or(0);
        let term = get(crate::storage::CF_META, crate::storage::META_APPLIED_TERM)?
            .map(|v| decode_u64(&v))
            .unwrap_or(0);
        let conf = match get(CF_META, META_CONF_STATE)? {
            Some(b) => ConfState::parse_from_bytes(&b).map_err(pb_err)?,
            None => ConfState::default(),
        };
        drop(cp);
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(conf);
        let mut snap = Snapshot::default();
        snap.set_metadata(meta);
        snap.set_data(dir.to_string_lossy().as_bytes().to_vec().into());
        tracing::info!(index, term, dir = %dir.display(), "checkpoint ready for a lagging member");
        Ok(snap)
    }

    /// True when this member has raft state (it was bootstrapped before).
    pub fn is_initialized(&self) -> bool {
        let c = self.cache.read();
        !c.conf.voters.is_empty() || !c.conf.learners.is_empty() || c.last > 0
    }

    /// Writes the initial configuration of a new cluster. Like an applied snapshot at index 1, so that
    /// a member added later (with an empty log) is brought up to date by a snapshot, which carries the
    /// initial configuration, rather than by replaying a log that does not contain it.
    pub fn bootstrap(&self, voters: Vec<u64>) -> Result<()> {
        let cs = ConfState {
            voters,
            ..Default::default()
        };
        let hs = HardState {
            term: 1,
            commit: 1,
            ..Default::default()
        };
        self.write_conf_state(&cs)?;
        let cf = self.db.cf(CF_RAFT_STATE)?;
        let mut b = rocksdb::WriteBatch::default();
        b.put_cf(&cf, HARD_STATE, hs.write_to_bytes().map_err(pb_err)?);
        let mut meta = encode_u64(1).to_vec();
        meta.extend_from_slice(&encode_u64(1));
        b.put_cf(&cf, SNAPSHOT_META, meta);
        drop(cf);
        self.db.write_raw(b, true)?;
        let mut c = self.cache.write();
        c.conf = cs;
        c.hard = hs;
        c.snap_index = 1;
        c.snap_term = 1;
        c.last = 1;
        c.last_term = 1;
        c.clear_tail();
        Ok(())
    }

    /// The conf state last written (bootstrap, apply, or snapshot).
    pub fn conf_state(&self) -> ConfState {
        self.cache.read().conf.clone()
    }

    pub fn hard_state(&self) -> HardState {
        self.cache.read().hard.clone()
    }

    /// Appends entries (truncating any conflicting tail) and saves the hard state, in one write.
    pub fn append(&self, entries: &[Entry], hs: Option<&HardState>, sync: bool) -> Result<()> {
        if entries.is_empty() && hs.is_none() {
            return Ok(());
        }
        let log = self.db.cf(CF_RAFT_LOG)?;
        let state = self.db.cf(CF_RAFT_STATE)?;
        let mut b = rocksdb::WriteBatch::default();
        let last = self.cache.read().last;
        if let Some(first) = entries.first() {
            if first.index <= last {
                b.delete_range_cf(&log, encode_u64(first.index), encode_u64(last + 1));
            }
            for e in entries {
                b.put_cf(
                    &log,
                    encode_u64(e.index),
                    e.write_to_bytes().map_err(pb_err)?,
                );
            }
        }
        if let Some(hs) = hs {
            b.put_cf(&state, HARD_STATE, hs.write_to_bytes().map_err(pb_err)?);
        }
        drop((log, state));
        let started = std::time::Instant::now();
        self.db.write_raw(b, sync)?;
        if sync {
            self.wal_fsync.observe(started.elapsed().as_secs_f64());
        }
        let mut c = self.cache.write();
        if let Some(l) = entries.last() {
            c.push_tail(entries);
            c.last = l.index;
            c.last_term = l.term;
        }
        if let Some(hs) = hs {
            c.hard = hs.clone();
        }
        Ok(())
    }

    /// Records a new commit index. Kept in memory and persisted with the next hard state: raft
    /// recovers the commit index, and `open` raises it to the applied index.
    pub fn set_commit(&self, commit: u64) {
        let mut c = self.cache.write();
        if commit > c.hard.commit {
            c.hard.commit = commit;
        }
    }

    /// Drops log entries up to and including `index` (whose applied state must already be durable).
    pub fn compact(&self, index: u64) -> Result<()> {
        let (snap_index, last) = {
            let c = self.cache.read();
            (c.snap_index, c.last)
        };
        if index <= snap_index || index > last {
            return Ok(());
        }
        let term = raft::Storage::term(self, index).map_err(|e| Error::Internal(e.to_string()))?;
        let log = self.db.cf(CF_RAFT_LOG)?;
        let state = self.db.cf(CF_RAFT_STATE)?;
        let mut b = rocksdb::WriteBatch::default();
        b.delete_range_cf(&log, encode_u64(0), encode_u64(index + 1));
        let mut meta = encode_u64(index).to_vec();
        meta.extend_from_slice(&encode_u64(term));
        b.put_cf(&state, SNAPSHOT_META, meta);
        drop((log, state));
        self.db.write_raw(b, true)?;
        let mut w = self.cache.write();
        w.snap_index = index;
        w.snap_term = term;
        w.trim_tail_to(index);
        Ok(())
    }

    /// `--force-new-cluster`: makes `me` the only voter, keeping the whole log (raft then commits
    /// it alone; nothing acknowledged can be lost). Refused when an entry after `applied` changes
    /// the membership, since applying it would undo the forced configuration.
    pub fn force_single_voter(&self, me: u64, applied: u64) -> Result<()> {
        let last = self.cache.read().last;
        for index in applied.saturating_add(1)..=last {
            if let Some(e) = self.read_entry(index)? {
                if e.get_entry_type() != raft::eraftpb::EntryType::EntryNormal {
                    return Err(Error::Internal(format!(
                        "--force-new-cluster: raft entry {index} is a membership change that is not applied yet; start the member once without the flag so that it applies it"
                    )));
                }
            }
        }
        let cs = ConfState {
            voters: vec![me],
            ..Default::default()
        };
        self.write_conf_state(&cs)?;
        self.cache.write().conf = cs;
        Ok(())
    }

    /// Writes `cs` as the state database's conf state (synced); the cache is the caller's.
    fn write_conf_state(&self, cs: &ConfState) -> Result<()> {
        let mut b = Batch::new();
        b.put(
            CF_META,
            META_CONF_STATE,
            cs.write_to_bytes().map_err(pb_err)?,
        );
        self.state.write(b, true)
    }

    fn read_entry(&self, index: u64) -> Result<Option<Entry>> {
        match self.db.get(CF_RAFT_LOG, &encode_u64(index))? {
            Some(b) => Ok(Some(Entry::parse_from_bytes(&b).map_err(pb_err)?)),
            None => Ok(None),
        }
    }
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let c = self.cache.read();
        Ok(RaftState::new(c.hard.clone(), c.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let (first, last) = {
            let c = self.cache.read();
            (c.snap_index + 1, c.last)
        };
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > last + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        if low >= high {
            return Ok(Vec::new());
        }
        {
            let c = self.cache.read();
            if c.cached(low).is_some() {
                let mut out = Vec::with_capacity((high - low) as usize);
                let mut size = 0u64;
                for i in low..high {
                    let Some(e) = c.cached(i) else { break };
                    size += e.compute_size() as u64;
                    if !out.is_empty() && size > max {
                        break;
                    }
                    out.push(e.clone());
                }
                return Ok(out);
            }
        }
        let cf = self.db.cf(CF_RAFT_LOG).map_err(to_raft)?;
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(encode_u64(high));
        let mut it = self.db.raw().raw_iterator_cf_opt(&cf, opts);
        it.seek(encode_u64(low));
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        while let Some(v) = it.value() {
            let e = Entry::parse_from_bytes(v).map_err(|e| to_raft(pb_err(e)))?;
            size += e.compute_size() as u64;
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e);
            it.next();
        }
        it.status().map_err(|e| to_raft(e.into()))?;
        if out.len() as u64 != high - low && size <= max {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        {
            let c = self.cache.read();
            if idx == c.snap_index {
                return Ok(c.snap_term);
            }
            if idx < c.snap_index {
                return Err(raft::Error::Store(StorageError::Compacted));
            }
            if idx > c.last {
                return Err(raft::Error::Store(StorageError::Unavailable));
            }
            if idx == c.last {
                return Ok(c.last_term);
            }
            if let Some(e) = c.cached(idx) {
                return Ok(e.term);
            }
        }
        match self.read_entry(idx).map_err(to_raft)? {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.cache.read().snap_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.cache.read().last)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        {
            let s = self.snaps.lock();
            if let Some(snap) = &s.ready {
                let index = snap.get_metadata().index;
                let (first, last) = {
                    let c = self.cache.read();
                    (c.snap_index, c.last)
                };
                // Usable while the log still holds what follows it, and only by a member that is in
                // its configuration: a checkpoint made before `to` was added (e.g. for the member it
                // replaces at the same peer URL) is refused by `to` ("not in the ConfState").
                if index >= request_index
                    && index >= first
                    && index <= last
                    && in_conf(snap.get_metadata().get_conf_state(), to)
                {
                    return Ok(snap.clone());
                }
            }
        }
        self.start_checkpoint();
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

/// Whether `id` is a voter or learner of `cs` (either side of a joint configuration).
fn in_conf(cs: &ConfState, id: u64) -> bool {
    cs.voters.contains(&id)
        || cs.learners.contains(&id)
        || cs.voters_outgoing.contains(&id)
        || cs.learners_next.contains(&id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage as _;

    /// Asks for a snapshot for `to` until a checkpoint is ready (they are made in the background).
    fn snapshot_for(s: &RaftStorage, to: u64) -> Snapshot {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match s.snapshot(0, to) {
                Ok(snap) => return snap,
                Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no checkpoint in 30 s"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The applied state at the bootstrap point (index 1) with configuration `cs`.
    fn set_conf(state: &Db, cs: &ConfState) {
        let mut b = Batch::new();
        b.put(CF_META, META_CONF_STATE, cs.write_to_bytes().unwrap());
        b.put(CF_META, crate::storage::META_APPLIED_INDEX, encode_u64(1));
        b.put(CF_META, crate::storage::META_APPLIED_TERM, encode_u64(1));
        state.write(b, true).unwrap();
    }

    /// A checkpoint made while member 3 was in the configuration is not handed to member 4, which
    /// replaced it: member 4 gets a new checkpoint whose conf state has it.
    #[test]
    fn a_snapshot_goes_only_to_a_member_of_its_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let log = Rocks::open_log(dir.path()).unwrap();
        let state = Db::open(dir.path()).unwrap();
        let s = RaftStorage::open(log, state.clone(), dir.path().join("snap")).unwrap();
        s.bootstrap(vec![1, 2, 3]).unwrap();
        let mut cs = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        set_conf(&state, &cs);
        let for3 = snapshot_for(&s, 3);
        assert_eq!(for3.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
        // Member 3 is removed and member 4 added (at the same peer URL).
        cs.voters = vec![1, 2, 4];
        set_conf(&state, &cs);
        let for4 = snapshot_for(&s, 4);
        assert_eq!(for4.get_metadata().get_conf_state().voters, vec![1, 2, 4]);
        // The new checkpoint serves the others too.
        let for2 = snapshot_for(&s, 2);
        assert_eq!(for2.get_data(), for4.get_data());
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Default::default()
        }
    }

    fn open(dir: &std::path::Path) -> RaftStorage {
        let log = Rocks::open_log(dir).unwrap();
        let state = Db::open(dir).unwrap();
        RaftStorage::open(log, state, dir.join("snap")).unwrap()
    }

    fn terms(s: &RaftStorage, low: u64, high: u64) -> Vec<u64> {
        s.entries(low, high, None, GetEntriesContext::empty(false))
            .unwrap()
            .iter()
            .map(|e| e.term)
            .collect()
    }

    #[test]
    fn cached_tail_matches_the_log_through_conflicts_compaction_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.bootstrap(vec![1]).unwrap();
        let first: Vec<Entry> = (2..=10).map(|i| entry(i, 2)).collect();
        s.append(&first, None, true).unwrap();
        // A new leader overwrites 6..: the tail drops the old suffix.
        let second: Vec<Entry> = (6..=8).map(|i| entry(i, 3)).collect();
        s.append(&second, None, true).unwrap();
        assert_eq!(s.last_index().unwrap(), 8);
        assert_eq!(terms(&s, 2, 9), vec![2, 2, 2, 2, 3, 3, 3]);
        assert_eq!(s.term(5).unwrap(), 2);
        assert_eq!(s.term(6).unwrap(), 3);
        assert!(s
            .entries(2, 10, None, GetEntriesContext::empty(false))
            .is_err());
        // A size limit still returns at least one entry.
        assert_eq!(
            s.entries(2, 9, Some(1), GetEntriesContext::empty(false))
                .unwrap()
                .len(),
            1
        );
        s.compact(4).unwrap();
        assert_eq!(s.first_index().unwrap(), 5);
        assert!(s
            .entries(4, 6, None, GetEntriesContext::empty(false))
            .is_err());
        assert_eq!(terms(&s, 5, 9), vec![2, 3, 3, 3]);
        drop(s);
        // After a restart the same entries come from RocksDB.
        let s = open(dir.path());
        assert_eq!(terms(&s, 5, 9), vec![2, 3, 3, 3]);
        assert_eq!(s.term(7).unwrap(), 3);
    }

    #[test]
    fn a_log_that_disagrees_with_applied_state_restarts_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.bootstrap(vec![1]).unwrap();
        let entries: Vec<Entry> = (2..=10).map(|i| entry(i, 2)).collect();
        s.append(&entries, None, true).unwrap();
        // Applied state from this log: nothing to do.
        assert!(!s.reconcile_with_applied(8, 2).unwrap());
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (2, 10));
        // A snapshot at 8 from term 3 was installed, its log restart was not: the old suffix goes.
        assert!(s.reconcile_with_applied(8, 3).unwrap());
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (9, 8));
        assert_eq!(s.term(8).unwrap(), 3);
        assert!(s.hard_state().commit >= 8);
        drop(s);
        let s = open(dir.path());
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (9, 8));
        assert_eq!(s.term(8).unwrap(), 3);
        assert!(!s.reconcile_with_applied(8, 3).unwrap());
        // Applied state beyond the end of the log.
        assert!(s.reconcile_with_applied(12, 4).unwrap());
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (13, 12)
        );
        assert_eq!(s.hard_state().commit, 12);
    }

    #[test]
    fn tail_stays_within_its_bounds() {
        let mut c = Cache::default();
        let many: Vec<Entry> = (1..=(TAIL_MAX_ENTRIES as u64 + 10))
            .map(|i| entry(i, 1))
            .collect();
        c.push_tail(&many);
        c.last = many.len() as u64;
        assert_eq!(c.tail.len(), TAIL_MAX_ENTRIES);
        assert_eq!(c.tail_bytes, TAIL_MAX_ENTRIES * 10);
        assert!(c.cached(10).is_none());
        assert_eq!(c.cached(c.last).map(|e| e.index), Some(c.last));
        c.trim_tail_to(c.last - 1);
        assert_eq!(c.tail.len(), 1);
        assert_eq!(c.tail_bytes, 10);
    }
}
