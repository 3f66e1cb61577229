//! `raft::Storage` on RocksDB: the raft log (`raft_log` CF) and hard/conf state (`raft_state` CF).
//!
//! Only the raft node thread writes here; raft-rs reads through the trait. A small cache keeps the log
//! bounds, the hard and conf state and the compaction point in memory.
//!
//! Invariants: appended entries and the hard state are written in one synced RocksDB write before the
//! Ready that carried them is advanced; the log is only compacted up to an index whose applied state
//! is durable (the caller syncs the WAL first); `first_index == snapshot index + 1`.

use std::sync::Arc;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::error::{Error, Result};
use crate::storage::{decode_u64, encode_u64, Db, CF_RAFT_LOG, CF_RAFT_STATE};

const HARD_STATE: &[u8] = b"hard_state";
const CONF_STATE: &[u8] = b"conf_state";
const SNAPSHOT_META: &[u8] = b"snapshot_meta";

#[derive(Default, Clone)]
struct Cache {
    hard: HardState,
    conf: ConfState,
    snap_index: u64,
    snap_term: u64,
    last: u64,
    last_term: u64,
}

/// The raft log and state of this member.
#[derive(Clone)]
pub struct RaftStorage {
    db: Db,
    cache: Arc<RwLock<Cache>>,
}

fn pb_err(e: protobuf::ProtobufError) -> Error {
    Error::Internal(format!("raft state: {e}"))
}

fn to_raft(e: Error) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl RaftStorage {
    /// Loads the raft state from `db`.
    pub fn open(db: Db) -> Result<RaftStorage> {
        let mut c = Cache::default();
        if let Some(b) = db.get(CF_RAFT_STATE, HARD_STATE)? {
            c.hard = HardState::parse_from_bytes(&b).map_err(pb_err)?;
        }
        if let Some(b) = db.get(CF_RAFT_STATE, CONF_STATE)? {
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
        Ok(RaftStorage {
            db,
            cache: Arc::new(RwLock::new(c)),
        })
    }

    /// True when this member has raft state (it was bootstrapped before).
    pub fn is_initialized(&self) -> bool {
        let c = self.cache.read();
        !c.conf.voters.is_empty() || !c.conf.learners.is_empty() || c.last > 0
    }

    /// Writes the initial configuration of a new cluster.
    pub fn bootstrap(&self, voters: Vec<u64>) -> Result<()> {
        let cs = ConfState {
            voters,
            ..Default::default()
        };
        let cf = self.db.cf(CF_RAFT_STATE)?;
        let mut b = rocksdb::WriteBatch::default();
        b.put_cf(&cf, CONF_STATE, cs.write_to_bytes().map_err(pb_err)?);
        drop(cf);
        self.db.write(b, true)?;
        self.cache.write().conf = cs;
        Ok(())
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
        let mut c = self.cache.read().clone();
        if let Some(first) = entries.first() {
            if first.index <= c.last {
                b.delete_range_cf(&log, encode_u64(first.index), encode_u64(c.last + 1));
            }
            for e in entries {
                b.put_cf(
                    &log,
                    encode_u64(e.index),
                    e.write_to_bytes().map_err(pb_err)?,
                );
            }
            if let Some(l) = entries.last() {
                c.last = l.index;
                c.last_term = l.term;
            }
        }
        if let Some(hs) = hs {
            b.put_cf(&state, HARD_STATE, hs.write_to_bytes().map_err(pb_err)?);
            c.hard = hs.clone();
        }
        drop((log, state));
        self.db.write(b, sync)?;
        *self.cache.write() = c;
        Ok(())
    }

    /// Records a new commit index (not synced: raft recovers it).
    pub fn set_commit(&self, commit: u64) -> Result<()> {
        let mut hs = self.hard_state();
        hs.commit = commit;
        self.append(&[], Some(&hs), false)
    }

    /// Drops log entries up to and including `index` (whose applied state must already be durable).
    pub fn compact(&self, index: u64) -> Result<()> {
        let c = self.cache.read().clone();
        if index <= c.snap_index || index > c.last {
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
        self.db.write(b, true)?;
        let mut w = self.cache.write();
        w.snap_index = index;
        w.snap_term = term;
        Ok(())
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
        let c = self.cache.read().clone();
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

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Sending state to a lagging peer arrives with the cluster issue (checkpoint streaming).
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}
