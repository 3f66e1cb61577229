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
//! Invariant: every column family listed in [`STATE_DB_CFS`] / [`LOG_DB_CFS`] exists after
//! [`Db::open`] / [`Db::open_log`].

use std::path::Path;
use std::sync::Arc;

pub mod checkpoint;

use rocksdb::{BoundColumnFamily, ColumnFamilyDescriptor, MultiThreaded, Options, WriteOptions};

use crate::error::{Error, Result};

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

type Inner = rocksdb::DBWithThreadMode<MultiThreaded>;

/// A shared handle on one of the databases.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
    cfs: &'static [&'static str],
}

/// A point-in-time view of the database.
pub type Snapshot<'a> = rocksdb::SnapshotWithThreadMode<'a, Inner>;

impl Db {
    /// Opens (or creates) the state database under the data dir `dir`.
    pub fn open(dir: &Path) -> Result<Db> {
        Db::open_at(&dir.join("rocksdb"), STATE_DB_CFS)
    }

    /// Opens (or creates) the raft log database under the data dir `dir`.
    pub fn open_log(dir: &Path) -> Result<Db> {
        Db::open_at(&dir.join("raft"), LOG_DB_CFS)
    }

    fn open_at(path: &Path, names: &'static [&'static str]) -> Result<Db> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::Storage(format!("create {}: {e}", path.display())))?;
        // A database with column families this build does not know (an older layout, which kept
        // the raft log in the state database) is refused rather than half opened.
        if let Ok(existing) = Inner::list_cf(&Options::default(), path) {
            let unknown: Vec<&String> = existing
                .iter()
                .filter(|n| n.as_str() != "default" && !names.contains(&n.as_str()))
                .collect();
            if !unknown.is_empty() {
                return Err(Error::Storage(format!(
                    "{} has column families {unknown:?} that this version does not use: the data \
                     dir was written by an older metastore with another layout (not migrated)",
                    path.display()
                )));
            }
        }
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        // Start writeback of the WAL as it grows, so that the occasional full sync (before the raft
        // log is compacted) has little left to write and does not stall apply.
        opts.set_wal_bytes_per_sync(1 << 20);
        opts.set_keep_log_file_num(4);
        // Bound what a restart replays: memtables holding old WAL data are flushed past this size.
        opts.set_max_total_wal_size(128 << 20);
        opts.set_max_log_file_size(16 << 20);
        let cfs = names.iter().map(|name| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if *name == CF_INDEX || *name == CF_KV {
                let mut block = rocksdb::BlockBasedOptions::default();
                block.set_bloom_filter(10.0, false);
                o.set_block_based_table_factory(&block);
            }
            ColumnFamilyDescriptor::new(*name, o)
        });
        let inner = Inner::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Db {
            inner: Arc::new(inner),
            cfs: names,
        })
    }

    /// The raw RocksDB handle.
    pub fn raw(&self) -> &Inner {
        &self.inner
    }

    /// A column family handle. All families exist after `open`, so a miss is an internal error.
    pub fn cf(&self, name: &str) -> Result<Arc<BoundColumnFamily<'_>>> {
        self.inner
            .cf_handle(name)
            .ok_or_else(|| Error::Internal(format!("missing column family {name}")))
    }

    /// Writes a batch; `sync` makes it durable before returning.
    pub fn write(&self, batch: rocksdb::WriteBatch, sync: bool) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.inner.write_opt(batch, &wo)?;
        Ok(())
    }

    /// Reads one value.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let h = self.cf(cf)?;
        Ok(self.inner.get_cf(&h, key)?)
    }

    /// Reads a big-endian u64 under a fixed name in a column family (0 when absent).
    pub fn get_u64(&self, cf: &str, key: &[u8]) -> Result<u64> {
        Ok(self.get(cf, key)?.map(|v| decode_u64(&v)).unwrap_or(0))
    }

    /// Makes every write so far durable (used before the raft log is truncated behind applied state).
    pub fn sync_wal(&self) -> Result<()> {
        self.inner.flush_wal(true)?;
        Ok(())
    }

    /// Flushes every memtable to SST files (a clean stop: the next start replays no WAL).
    pub fn flush_all(&self) -> Result<()> {
        let mut fo = rocksdb::FlushOptions::default();
        fo.set_wait(true);
        for name in self.cfs {
            let h = self.cf(name)?;
            self.inner.flush_cf_opt(&h, &fo)?;
        }
        Ok(())
    }

    /// Approximate on-disk size of the database in bytes (SST files plus WAL-backed memtables).
    pub fn size_bytes(&self) -> u64 {
        self.sum_property("rocksdb.total-sst-files-size")
            + self.sum_property("rocksdb.size-all-mem-tables")
    }

    /// Approximate size of live data in bytes.
    pub fn size_in_use_bytes(&self) -> u64 {
        self.sum_property("rocksdb.estimate-live-data-size")
            + self.sum_property("rocksdb.cur-size-all-mem-tables")
    }

    /// etcd's defragment, in RocksDB's terms: flushes every column family's memtable and compacts
    /// it to the bottom level, which drops deleted and overwritten data and gives its space back.
    /// Blocking; writes go on meanwhile.
    pub fn defragment(&self) -> Result<()> {
        for name in self.cfs {
            let Some(h) = self.inner.cf_handle(name) else {
                continue;
            };
            self.inner
                .flush_cf(&h)
                .map_err(|e| Error::Storage(format!("flush {name}: {e}")))?;
            self.inner
                .compact_range_cf(&h, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    fn sum_property(&self, prop: &str) -> u64 {
        self.cfs
            .iter()
            .filter_map(|name| self.inner.cf_handle(name))
            .filter_map(|h| self.inner.property_int_value_cf(&h, prop).ok().flatten())
            .sum()
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

    #[test]
    fn a_database_with_unknown_column_families_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // The state database opened as if it were the log database: its families are unknown there.
        drop(Db::open(dir.path()).unwrap());
        std::fs::rename(dir.path().join("rocksdb"), dir.path().join("raft")).unwrap();
        let err = Db::open_log(dir.path()).err().expect("refused");
        assert!(
            err.to_string().contains("written by an older metastore"),
            "{err}"
        );
        // Each database reopens fine with its own families.
        drop(Db::open(dir.path()).unwrap());
        drop(Db::open_at(&dir.path().join("raft"), STATE_DB_CFS).unwrap());
    }
}
