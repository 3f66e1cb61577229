//! The RocksDB engine: one RocksDB database per [`Rocks`] handle, one column family per name.
//!
//! It serves both databases of a member: the state (through the [`Engine`] seam, like any engine) and
//! the raft log (used directly by `raft/storage.rs`, which writes raw RocksDB batches). Tuning lives
//! here: LZ4 per column family, bloom filters on `kv` and `index`, WAL writeback as it grows and a
//! bound on what a restart replays.
//!
//! Invariant: every column family the handle was opened with exists after [`Rocks::open_at`]; a
//! database with families this build does not know is refused, not half opened.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, DBRawIteratorWithThreadMode, MultiThreaded, Options,
    ReadOptions, WriteOptions,
};

use super::engine::{Batch, Cf, Cursor, Engine, Op, Read};
use super::{LOG_DB_CFS, STATE_DB_CFS};
use crate::error::{Error, Result};

type Inner = rocksdb::DBWithThreadMode<MultiThreaded>;

/// A shared handle on one RocksDB database.
#[derive(Clone)]
pub struct Rocks {
    inner: Arc<Inner>,
    cfs: &'static [&'static str],
}

impl Rocks {
    /// Opens (or creates) the state database under the data dir `dir`.
    pub fn open_state(dir: &Path) -> Result<Rocks> {
        Rocks::open_at(&dir.join("rocksdb"), STATE_DB_CFS)
    }

    /// Opens (or creates) the raft log database under the data dir `dir`.
    pub fn open_log(dir: &Path) -> Result<Rocks> {
        Rocks::open_at(&dir.join("raft"), LOG_DB_CFS)
    }

    /// Opens (or creates) a database at `path` with the column families `names`.
    pub fn open_at(path: &Path, names: &'static [&'static str]) -> Result<Rocks> {
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
            if *name == super::CF_INDEX || *name == super::CF_KV {
                let mut block = rocksdb::BlockBasedOptions::default();
                block.set_bloom_filter(10.0, false);
                o.set_block_based_table_factory(&block);
            }
            ColumnFamilyDescriptor::new(*name, o)
        });
        let inner = Inner::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Rocks {
            inner: Arc::new(inner),
            cfs: names,
        })
    }

    /// The raw RocksDB handle (the raft log's own reads).
    pub fn raw(&self) -> &Inner {
        &self.inner
    }

    /// A column family handle. All families exist after `open`, so a miss is an internal error.
    pub fn cf(&self, name: &str) -> Result<Arc<BoundColumnFamily<'_>>> {
        self.inner
            .cf_handle(name)
            .ok_or_else(|| Error::Internal(format!("missing column family {name}")))
    }

    /// Writes a raw RocksDB batch; `sync` makes it durable before returning.
    pub fn write_raw(&self, batch: rocksdb::WriteBatch, sync: bool) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.inner.write_opt(batch, &wo)?;
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

    fn sum_property(&self, prop: &str) -> u64 {
        self.cfs
            .iter()
            .filter_map(|name| self.inner.cf_handle(name))
            .filter_map(|h| self.inner.property_int_value_cf(&h, prop).ok().flatten())
            .sum()
    }

    /// Translates an engine batch into one RocksDB batch.
    fn translate(&self, batch: Batch) -> Result<rocksdb::WriteBatch> {
        let handles = self
            .cfs
            .iter()
            .map(|n| self.cf(n))
            .collect::<Result<Vec<_>>>()?;
        let handle = |cf: Cf| {
            self.cfs
                .iter()
                .position(|n| *n == cf)
                .map(|i| &handles[i])
                .ok_or_else(|| Error::Internal(format!("missing column family {cf}")))
        };
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.into_ops() {
            match op {
                Op::Put(cf, k, v) => wb.put_cf(handle(cf)?, k, v),
                Op::Delete(cf, k) => wb.delete_cf(handle(cf)?, k),
                Op::Clear(cf) => {
                    // One range tombstone from the first to past the last key.
                    let h = handle(cf)?;
                    let mut it = self.inner.raw_iterator_cf(h);
                    it.seek_to_first();
                    let first = it.key().map(|k| k.to_vec());
                    it.seek_to_last();
                    let last = it.key().map(|k| k.to_vec());
                    it.status()?;
                    if let (Some(f), Some(mut l)) = (first, last) {
                        l.push(0);
                        wb.delete_range_cf(h, f, l);
                    }
                }
            }
        }
        Ok(wb)
    }
}

fn read_opts(
    upper: Option<Vec<u8>>,
    snap: Option<&rocksdb::SnapshotWithThreadMode<'_, Inner>>,
) -> ReadOptions {
    let mut o = ReadOptions::default();
    if let Some(u) = upper {
        o.set_iterate_upper_bound(u);
    }
    if let Some(s) = snap {
        o.set_snapshot(s);
    }
    o
}

/// Reads of the database, latest state (`snap` None) or through a snapshot.
fn get(db: &Rocks, snap: Option<&Snap<'_>>, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let h = db.cf(cf)?;
    Ok(db
        .inner
        .get_pinned_cf_opt(&h, key, &read_opts(None, snap))?
        .map(|v| v.to_vec()))
}

fn multi_get(
    db: &Rocks,
    snap: Option<&Snap<'_>>,
    cf: Cf,
    keys: &[Vec<u8>],
) -> Result<Vec<Option<Vec<u8>>>> {
    let h = db.cf(cf)?;
    db.inner
        .batched_multi_get_cf_opt(&h, keys.iter(), false, &read_opts(None, snap))
        .into_iter()
        .map(|r| Ok(r?.map(|v| v.to_vec())))
        .collect()
}

fn cursor<'a>(
    db: &'a Rocks,
    snap: Option<&'a Snap<'a>>,
    cf: Cf,
    upper: Option<Vec<u8>>,
) -> Result<Box<dyn Cursor + 'a>> {
    let h = db.cf(cf)?;
    let it = db.inner.raw_iterator_cf_opt(&h, read_opts(upper, snap));
    Ok(Box::new(RocksCursor(it)))
}

type Snap<'a> = rocksdb::SnapshotWithThreadMode<'a, Inner>;

struct RocksCursor<'a>(DBRawIteratorWithThreadMode<'a, Inner>);

impl Cursor for RocksCursor<'_> {
    fn seek(&mut self, key: &[u8]) {
        self.0.seek(key)
    }
    fn next(&mut self) {
        self.0.next()
    }
    fn key(&self) -> Option<&[u8]> {
        self.0.key()
    }
    fn value(&self) -> Option<&[u8]> {
        self.0.value()
    }
    fn status(&self) -> Result<()> {
        Ok(self.0.status()?)
    }
}

/// A RocksDB snapshot as a reader.
struct RocksView<'a> {
    db: &'a Rocks,
    snap: Snap<'a>,
}

impl Read for RocksView<'_> {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get(self.db, Some(&self.snap), cf, key)
    }
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        multi_get(self.db, Some(&self.snap), cf, keys)
    }
    fn cursor(&self, cf: Cf, upper: Option<Vec<u8>>) -> Result<Box<dyn Cursor + '_>> {
        cursor(self.db, Some(&self.snap), cf, upper)
    }
}

impl Read for Rocks {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get(self, None, cf, key)
    }
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        multi_get(self, None, cf, keys)
    }
    fn cursor(&self, cf: Cf, upper: Option<Vec<u8>>) -> Result<Box<dyn Cursor + '_>> {
        cursor(self, None, cf, upper)
    }
}

impl Engine for Rocks {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn snapshot(&self) -> Box<dyn Read + '_> {
        Box::new(RocksView {
            db: self,
            snap: self.inner.snapshot(),
        })
    }

    fn write(&self, batch: Batch, sync: bool) -> Result<()> {
        let wb = self.translate(batch)?;
        self.write_raw(wb, sync)
    }

    fn sync(&self) -> Result<()> {
        self.inner.flush_wal(true)?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.flush_all()
    }

    /// SST files plus WAL-backed memtables.
    fn size_bytes(&self) -> u64 {
        self.sum_property("rocksdb.total-sst-files-size")
            + self.sum_property("rocksdb.size-all-mem-tables")
    }

    fn size_in_use_bytes(&self) -> u64 {
        self.sum_property("rocksdb.estimate-live-data-size")
            + self.sum_property("rocksdb.cur-size-all-mem-tables")
    }

    /// In RocksDB's terms: flushes every column family's memtable and compacts it to the bottom
    /// level, which drops deleted and overwritten data and gives its space back. Writes go on
    /// meanwhile.
    fn defragment(&self) -> Result<()> {
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

    /// A RocksDB checkpoint: hard links to the SST files, cheap.
    fn checkpoint(&self, dir: &Path) -> Result<()> {
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.inner)?;
        cp.create_checkpoint(dir)?;
        Ok(())
    }

    fn open_checkpoint(&self, dir: &Path) -> Result<Box<dyn Read>> {
        let cfs = self
            .cfs
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let inner = Inner::open_cf_descriptors_read_only(&Options::default(), dir, cfs, false)?;
        Ok(Box::new(Rocks {
            inner: Arc::new(inner),
            cfs: self.cfs,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_with_unknown_column_families_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // The state database opened as if it were the log database: its families are unknown there.
        drop(Rocks::open_state(dir.path()).unwrap());
        std::fs::rename(dir.path().join("rocksdb"), dir.path().join("raft")).unwrap();
        let err = Rocks::open_log(dir.path()).err().expect("refused");
        assert!(
            err.to_string().contains("written by an older metastore"),
            "{err}"
        );
        // Each database reopens fine with its own families.
        drop(Rocks::open_state(dir.path()).unwrap());
        drop(Rocks::open_at(&dir.path().join("raft"), STATE_DB_CFS).unwrap());
    }
}
