//! The RocksDB instance and its column families (DESIGN.md §2).
//!
//! One RocksDB database holds everything: the MVCC keyspace (`kv`, `index`), server metadata (`meta`),
//! membership (`members`) and the raft log and state (`raft_log`, `raft_state`). This module owns opening
//! it and naming the column families; it knows nothing about what the values mean.
//!
//! Invariant: every column family listed in [`ALL_CFS`] exists after [`Db::open`].

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
/// Lease id -> lease record (reserved for the lease issue).
pub const CF_LEASE: &str = "lease";
/// Raft index (big-endian) -> raft entry.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Fixed names -> hard state, conf state, snapshot metadata.
pub const CF_RAFT_STATE: &str = "raft_state";

/// `meta` CF name of the applied raft index (written with the data it produced).
pub const META_APPLIED_INDEX: &[u8] = b"consistent_index";
/// `meta` CF name of the term of the applied raft index.
pub const META_APPLIED_TERM: &[u8] = b"applied_term";

/// All column families, in creation order.
pub const ALL_CFS: &[&str] = &[
    CF_KV,
    CF_INDEX,
    CF_META,
    CF_MEMBERS,
    CF_LEASE,
    CF_RAFT_LOG,
    CF_RAFT_STATE,
];

type Inner = rocksdb::DBWithThreadMode<MultiThreaded>;

/// A shared handle on the database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

/// A point-in-time view of the database.
pub type Snapshot<'a> = rocksdb::SnapshotWithThreadMode<'a, Inner>;

impl Db {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Db> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Storage(format!("create {}: {e}", dir.display())))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        opts.set_keep_log_file_num(4);
        // Bound what a restart replays: memtables holding old WAL data are flushed past this size.
        opts.set_max_total_wal_size(128 << 20);
        opts.set_max_log_file_size(16 << 20);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if *name == CF_INDEX || *name == CF_KV {
                let mut block = rocksdb::BlockBasedOptions::default();
                block.set_bloom_filter(10.0, false);
                o.set_block_based_table_factory(&block);
            }
            ColumnFamilyDescriptor::new(*name, o)
        });
        let inner = Inner::open_cf_descriptors(&opts, dir.join("rocksdb"), cfs)?;
        Ok(Db {
            inner: Arc::new(inner),
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
        for name in ALL_CFS {
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

    fn sum_property(&self, prop: &str) -> u64 {
        ALL_CFS
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
