//! Checkpoints: how a member's state is shipped to a member that is too far behind.
//!
//! A checkpoint is a consistent copy of the state database in a directory, made by the engine
//! (RocksDB: hard links to its files, cheap; memory: one file). The applied index, its term and the
//! conf state stored in its `meta` say which raft index it stands for. Installing one replaces this
//! member's replicated column families with the checkpoint's; the raft log (a separate database) and
//! this member's `local` facts are not taken from it.
//!
//! Invariant: an install is recorded (synced) before it starts and cleared after it ends, so a crash in
//! between redoes it on restart instead of leaving half-copied state.

use std::path::Path;

use super::{Batch, Db, Read, CF_INDEX, CF_KV, CF_LEASE, CF_LOCAL, CF_MEMBERS, CF_META};
use crate::error::Result;

/// Column families that hold replicated state (what a snapshot carries).
pub const STATE_CFS: &[&str] = &[CF_KV, CF_INDEX, CF_META, CF_MEMBERS, CF_LEASE];

/// `local` name recording an install in progress (value: the checkpoint directory).
pub const INSTALLING: &[u8] = b"snapshot_installing";

const COPY_BATCH_BYTES: usize = 4 << 20;

/// Creates a checkpoint of the state database `db` in `dir` (which must not exist).
pub fn create(db: &Db, dir: &Path) -> Result<()> {
    db.checkpoint(dir)
}

/// Opens a checkpoint of `db`'s engine for reading.
pub fn open(db: &Db, dir: &Path) -> Result<Box<dyn Read>> {
    db.open_checkpoint(dir)
}

/// Replaces the replicated column families of `db` with those of checkpoint `dir`.
pub fn install(db: &Db, dir: &Path) -> Result<()> {
    let mut mark = Batch::new();
    mark.put(CF_LOCAL, INSTALLING, dir.to_string_lossy().as_bytes());
    db.write(mark, true)?;
    let cp = open(db, dir)?;
    for name in STATE_CFS {
        let mut batch = Batch::new();
        batch.clear(name);
        let mut it = cp.cursor(name, None)?;
        it.seek(&[]);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            batch.put(name, k, v);
            if batch.bytes() >= COPY_BATCH_BYTES {
                db.write(std::mem::take(&mut batch), false)?;
            }
            it.next();
        }
        it.status()?;
        db.write(batch, false)?;
    }
    let mut done = Batch::new();
    done.delete(CF_LOCAL, INSTALLING);
    db.write(done, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(db: &Db, cf: crate::storage::Cf, k: &[u8], v: &[u8]) {
        let mut b = Batch::new();
        b.put(cf, k, v);
        db.write(b, false).unwrap();
    }

    fn all(db: &Db, cf: crate::storage::Cf) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut it = db.cursor(cf, None).unwrap();
        it.seek(&[]);
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
        let (leader, follower) = (
            Db::open(&dir.path().join("leader")).unwrap(),
            Db::open(&dir.path().join("follower")).unwrap(),
        );
        install_case(dir.path(), leader, follower);
    }

    #[test]
    fn the_memory_engine_installs_its_checkpoints_the_same_way() {
        let dir = tempfile::tempdir().unwrap();
        install_case(dir.path(), Db::memory(), Db::memory());
    }

    fn install_case(dir: &Path, leader: Db, follower: Db) {
        put(&leader, CF_KV, b"k1", b"leader");
        put(&leader, CF_META, b"consistent_index", &9u64.to_be_bytes());
        put(&leader, CF_MEMBERS, b"m", b"leader's members");
        put(&leader, CF_LOCAL, b"member_id", b"leader");
        let cp = dir.join("cp");
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
