//! RocksDB checkpoints: how a member's state is shipped to a member that is too far behind.
//!
//! A checkpoint is a consistent copy of the state database made of hard links (cheap). The applied
//! index, its term and the conf state stored in its `meta` say which raft index it stands for.
//! Installing one replaces this member's replicated column families with the checkpoint's; the raft
//! log (a separate database) and this member's `local` facts are not taken from it.
//!
//! Invariant: an install is recorded (synced) before it starts and cleared after it ends, so a crash in
//! between redoes it on restart instead of leaving half-copied state.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch};

use super::{Db, CF_INDEX, CF_KV, CF_LEASE, CF_LOCAL, CF_MEMBERS, CF_META, STATE_DB_CFS};
use crate::error::{Error, Result};

/// Column families that hold replicated state (what a snapshot carries).
pub const STATE_CFS: &[&str] = &[CF_KV, CF_INDEX, CF_META, CF_MEMBERS, CF_LEASE];

/// `local` name recording an install in progress (value: the checkpoint directory).
pub const INSTALLING: &[u8] = b"snapshot_installing";

const COPY_BATCH_BYTES: usize = 4 << 20;

/// Creates a checkpoint of the state database `db` in `dir` (which must not exist).
pub fn create(db: &Db, dir: &Path) -> Result<()> {
    let cp = rocksdb::checkpoint::Checkpoint::new(db.raw())?;
    cp.create_checkpoint(dir)?;
    Ok(())
}

type ReadOnly = rocksdb::DBWithThreadMode<rocksdb::MultiThreaded>;

/// Opens a checkpoint read-only.
pub fn open(dir: &Path) -> Result<ReadOnly> {
    let cfs = STATE_DB_CFS
        .iter()
        .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
    Ok(ReadOnly::open_cf_descriptors_read_only(
        &Options::default(),
        dir,
        cfs,
        false,
    )?)
}

/// Reads a value from a checkpoint.
pub fn get(cp: &ReadOnly, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let h = cp
        .cf_handle(cf)
        .ok_or_else(|| Error::Internal(format!("checkpoint lacks {cf}")))?;
    Ok(cp.get_cf(&h, key)?)
}

/// Replaces the replicated column families of `db` with those of checkpoint `dir`.
pub fn install(db: &Db, dir: &Path) -> Result<()> {
    let state = db.cf(CF_LOCAL)?;
    let mut mark = WriteBatch::default();
    mark.put_cf(&state, INSTALLING, dir.to_string_lossy().as_bytes());
    drop(state);
    db.write(mark, true)?;
    let cp = open(dir)?;
    for name in STATE_CFS {
        let ours = db.cf(name)?;
        // Clear ours: one range tombstone from the first to past the last key.
        let (first, last) = {
            let mut it = db.raw().raw_iterator_cf(&ours);
            it.seek_to_first();
            let first = it.key().map(|k| k.to_vec());
            it.seek_to_last();
            (first, it.key().map(|k| k.to_vec()))
        };
        let mut batch = WriteBatch::default();
        if let (Some(f), Some(mut l)) = (first, last) {
            l.push(0);
            batch.delete_range_cf(&ours, f, l);
        }
        let theirs = cp
            .cf_handle(name)
            .ok_or_else(|| Error::Internal(format!("checkpoint lacks {name}")))?;
        let mut it = cp.raw_iterator_cf(&theirs);
        it.seek_to_first();
        let mut size = 0;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            batch.put_cf(&ours, k, v);
            size += k.len() + v.len();
            if size >= COPY_BATCH_BYTES {
                db.write(std::mem::take(&mut batch), false)?;
                size = 0;
            }
            it.next();
        }
        it.status()?;
        db.write(batch, false)?;
    }
    let state = db.cf(CF_LOCAL)?;
    let mut done = WriteBatch::default();
    done.delete_cf(&state, INSTALLING);
    drop(state);
    db.write(done, true)?;
    Ok(())
}
