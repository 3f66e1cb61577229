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

#[cfg(test)]
mod tests {
    use super::*;

    fn put(db: &Db, cf: &str, k: &[u8], v: &[u8]) {
        let mut b = WriteBatch::default();
        b.put_cf(&db.cf(cf).unwrap(), k, v);
        db.write(b, false).unwrap();
    }

    fn all(db: &Db, cf: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let h = db.cf(cf).unwrap();
        let mut it = db.raw().raw_iterator_cf(&h);
        it.seek_to_first();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            out.push((k.to_vec(), v.to_vec()));
            it.next();
        }
        out
    }

    /// An install replaces every replicated family and keeps `local`; one cut short (its mark
    /// written, part of the copy done) and run again ends in the same state with the mark cleared.
    #[test]
    fn install_replaces_replicated_state_and_a_rerun_finishes_an_interrupted_one() {
        let dir = tempfile::tempdir().unwrap();
        let leader = Db::open(&dir.path().join("leader")).unwrap();
        put(&leader, CF_KV, b"k1", b"leader");
        put(&leader, CF_META, b"consistent_index", &9u64.to_be_bytes());
        put(&leader, CF_MEMBERS, b"m", b"leader's members");
        put(&leader, CF_LOCAL, b"member_id", b"leader");
        let cp = dir.path().join("cp");
        create(&leader, &cp).unwrap();

        let expect = |db: &Db| {
            for cf in STATE_CFS {
                assert_eq!(all(db, cf), all(&leader, cf), "column family {cf}");
            }
            assert_eq!(
                db.get(CF_LOCAL, b"member_id").unwrap().unwrap(),
                b"follower"
            );
            assert_eq!(db.get(CF_LOCAL, INSTALLING).unwrap(), None);
        };
        let follower = Db::open(&dir.path().join("follower")).unwrap();
        put(&follower, CF_KV, b"k0", b"old");
        put(&follower, CF_KV, b"k2", b"old");
        put(&follower, CF_LEASE, b"r1", b"old lease");
        put(&follower, CF_LOCAL, b"member_id", b"follower");
        install(&follower, &cp).unwrap();
        expect(&follower);

        // Interrupted: the mark is down and the copy half done, with stale keys around it.
        put(
            &follower,
            CF_LOCAL,
            INSTALLING,
            cp.to_string_lossy().as_bytes(),
        );
        put(&follower, CF_KV, b"k3", b"stale");
        put(&follower, CF_INDEX, b"i", b"stale");
        assert_eq!(
            follower.get(CF_LOCAL, INSTALLING).unwrap().unwrap(),
            cp.to_string_lossy().as_bytes()
        );
        install(&follower, &cp).unwrap();
        expect(&follower);
    }
}
