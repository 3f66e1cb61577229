//! The RocksDB instances and their column families (DESIGN.md §2).
//!
//! Two RocksDB databases under the data dir, each with its own write-ahead log:
//! * the state (`rocksdb/`): the MVCC keyspace (`kv`, `index`), replicated server metadata (`meta`,
//!   which also holds the applied index and the conf state), membership (`members`), leases (`lease`)
//!   and this member's own facts (`local`: its ids, an interrupted snapshot install);
//! * the raft log (`raft/`): entries (`raft_log`) and the hard state and compaction point (`raft_state`).
//!
//! They are separate so that apply's unsynced writes never queue behind the raft thread's synced log
//! writes (one RocksDB serializes all writes through one write group: apply used to wait ~200 µs per
//! batch for somebody else's fdatasync). This module owns opening them and naming the column
//! families; it knows nothing about what the values mean.
//!
//! The state reaches its database only through the [`Engine`] seam (`engine.rs`): [`Db`] is a shared
//! handle on any engine, RocksDB (`rocks.rs`) or memory (`memory.rs`). The raft log is always RocksDB
//! ([`Rocks`], used directly by `raft/storage.rs`).
//!
//! Invariant: every column family listed in [`STATE_DB_CFS`] / [`LOG_DB_CFS`] exists after
//! [`Db::open`] / [`Rocks::open_log`].

use std::path::Path;
use std::sync::Arc;

pub mod checkpoint;
mod engine;
mod memory;
mod rocks;

pub use engine::{Batch, Cf, Cursor, Engine, Op, Read};
pub use memory::Memory;
pub use rocks::Rocks;

use crate::error::Result;

/// Revision-keyed MVCC values (`mvccpb.KeyValue`), the event history.
pub const CF_KV: &str = "kv";
/// Order-preserving user key + inverted revision -> empty or tombstone mark.
pub const CF_INDEX: &str = "index";
/// Fixed names -> server metadata (applied index, revisions, cluster id).
pub const CF_META: &str = "meta";
/// Member id -> member record.
pub const CF_MEMBERS: &str = "members";
/// `r<id>` -> lease record, `k<id><key>` -> attachment of a key to a lease.
pub const CF_LEASE: &str = "lease";
/// This member's own facts, never replicated: member and cluster id, a snapshot install in progress.
pub const CF_LOCAL: &str = "local";
/// Raft index (big-endian) -> raft entry (log DB).
pub const CF_RAFT_LOG: &str = "raft_log";
/// Fixed names -> hard state, snapshot metadata (log DB).
pub const CF_RAFT_STATE: &str = "raft_state";

/// `meta` CF name of the applied raft index (written with the data it produced).
pub const META_APPLIED_INDEX: &[u8] = b"consistent_index";
/// `meta` CF name of the term of the applied raft index.
pub const META_APPLIED_TERM: &[u8] = b"applied_term";
/// `meta` CF name of the raft conf state, written by apply with the applied index it belongs to.
pub const META_CONF_STATE: &[u8] = b"conf_state";
/// Key in `meta`: the active alarms (a `metastorepb.AlarmList`).
pub const META_ALARMS: &[u8] = b"alarms";

/// Column families of the state DB, in creation order.
pub const STATE_DB_CFS: &[&str] = &[CF_KV, CF_INDEX, CF_META, CF_MEMBERS, CF_LEASE, CF_LOCAL];
/// Column families of the raft log DB.
pub const LOG_DB_CFS: &[&str] = &[CF_RAFT_LOG, CF_RAFT_STATE];

/// A shared handle on the state database, whatever its engine.
#[derive(Clone)]
pub struct Db(Arc<dyn Engine>);

impl Db {
    /// Opens (or creates) the RocksDB state database under the data dir `dir`.
    pub fn open(dir: &Path) -> Result<Db> {
        Ok(Db(Arc::new(Rocks::open_state(dir)?)))
    }

    /// A fresh in-memory state database.
    pub fn memory() -> Db {
        Db(Arc::new(Memory::new()))
    }
}

impl std::ops::Deref for Db {
    type Target = dyn Engine;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// Big-endian encoding of a u64.
pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Decodes a big-endian u64; a short value decodes as 0.
pub fn decode_u64(b: &[u8]) -> u64 {
    b.get(..8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every engine must do, run against each.
    fn conformance(db: &Db, dir: &Path) {
        let mut b = Batch::new();
        b.put(CF_KV, b"a".to_vec(), b"1".to_vec());
        b.put(CF_KV, b"b".to_vec(), b"2".to_vec());
        b.put(CF_KV, b"c".to_vec(), b"3".to_vec());
        b.put(CF_META, b"n".to_vec(), encode_u64(7).to_vec());
        db.write(b, true).unwrap();
        assert_eq!(db.get(CF_KV, b"b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(
            db.get(CF_INDEX, b"b").unwrap(),
            None,
            "families are separate"
        );
        assert_eq!(db.get_u64(CF_META, b"n").unwrap(), 7);
        assert_eq!(db.get_u64(CF_META, b"absent").unwrap(), 0);
        assert_eq!(
            db.multi_get(CF_KV, &[b"c".to_vec(), b"x".to_vec(), b"a".to_vec()])
                .unwrap(),
            vec![Some(b"3".to_vec()), None, Some(b"1".to_vec())]
        );

        let snap = db.snapshot();
        let mut b = Batch::new();
        b.delete(CF_KV, b"a".to_vec());
        b.put(CF_KV, b"b".to_vec(), b"20".to_vec());
        db.write(b, false).unwrap();
        let keys = |r: &dyn Read, from: &[u8], upper: Option<Vec<u8>>| {
            let mut c = r.cursor(CF_KV, upper).unwrap();
            c.seek(from);
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (c.key(), c.value()) {
                out.push((k.to_vec(), v.to_vec()));
                c.next();
            }
            c.status().unwrap();
            out
        };
        let kv = |k: &[u8], v: &[u8]| (k.to_vec(), v.to_vec());
        assert_eq!(
            keys(&*snap, b"", None),
            vec![kv(b"a", b"1"), kv(b"b", b"2"), kv(b"c", b"3")],
            "a snapshot does not move"
        );
        assert_eq!(snap.get(CF_KV, b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(
            keys(&**db, b"", None),
            vec![kv(b"b", b"20"), kv(b"c", b"3")]
        );
        assert_eq!(
            keys(&**db, b"b\0", Some(b"c".to_vec())),
            vec![],
            "the upper bound is exclusive"
        );
        assert_eq!(keys(&**db, b"bb", None), vec![kv(b"c", b"3")]);
        drop(snap);

        let cp = dir.join("cp");
        db.checkpoint(&cp).unwrap();
        let mut b = Batch::new();
        b.clear(CF_KV);
        b.put(CF_KV, b"z".to_vec(), b"9".to_vec());
        db.write(b, false).unwrap();
        assert_eq!(keys(&**db, b"", None), vec![kv(b"z", b"9")]);
        let opened = db.open_checkpoint(&cp).unwrap();
        assert_eq!(
            keys(&*opened, b"", None),
            vec![kv(b"b", b"20"), kv(b"c", b"3")],
            "a checkpoint holds the state it was made at"
        );
        assert_eq!(opened.get_u64(CF_META, b"n").unwrap(), 7);
    }

    #[test]
    fn rocksdb_keeps_the_engine_contract() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.name(), "rocksdb");
        conformance(&db, dir.path());
    }

    #[test]
    fn memory_keeps_the_engine_contract() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::memory();
        assert_eq!(db.name(), "memory");
        conformance(&db, dir.path());
    }
}
