//! Physical compaction: removes the versions that no read at or above the compacted revision can see.
//!
//! Apply only records the compacted revision (readers refuse revisions below it from then on); this
//! task then deletes, in bounded batches, for every key all versions older than its newest version at
//! or below the compacted revision, and that version too when it is a tombstone (its `kv` record is kept
//! when it sits exactly at the compacted revision, so a watch from there still sees the delete).
//!
//! Invariant: nothing a read at revision >= the compacted revision can see is ever removed, so the work
//! can run concurrently with apply and with reads, and resumes after a restart (`compact_finished`).

use std::sync::mpsc;

use tokio::sync::watch;

use super::revision::{decode_index_key, Revision, TOMBSTONE};
use super::store::{META_COMPACT_FINISHED, META_COMPACT_REV};
use crate::error::Result;
use crate::storage::{encode_u64, Batch, Db, CF_INDEX, CF_KV, CF_META};

const BATCH_DELETES: usize = 10_000;

/// Handle to the compaction task.
#[derive(Clone)]
pub struct Compactor {
    tx: mpsc::Sender<i64>,
    done: watch::Receiver<i64>,
}

impl Compactor {
    /// Starts the task; resumes a compaction that a restart interrupted.
    pub fn start(db: Db) -> Result<Compactor> {
        let scheduled = db.get_u64(CF_META, META_COMPACT_REV)? as i64;
        let finished = db.get_u64(CF_META, META_COMPACT_FINISHED)? as i64;
        let (tx, rx) = mpsc::channel::<i64>();
        let (done_tx, done) = watch::channel(finished);
        std::thread::Builder::new()
            .name("compactor".into())
            .spawn(move || {
                for target in rx {
                    if target <= *done_tx.borrow() {
                        continue;
                    }
                    match compact(&db, target) {
                        Ok(()) => {
                            done_tx.send_replace(target);
                        }
                        Err(e) => tracing::error!(error = %e, target, "compaction failed"),
                    }
                }
            })
            .map_err(|e| crate::error::Error::Internal(format!("spawn compactor: {e}")))?;
        let c = Compactor { tx, done };
        if scheduled > finished {
            c.schedule(scheduled);
        }
        Ok(c)
    }

    /// Asks for a compaction at `rev` (already recorded by apply).
    pub fn schedule(&self, rev: i64) {
        let _ = self.tx.send(rev);
    }

    /// Waits until a compaction at or above `rev` has been physically applied.
    pub async fn wait(&self, rev: i64) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|&d| d >= rev).await;
    }
}

fn compact(db: &Db, target: i64) -> Result<()> {
    let snap = db.snapshot();
    let mut it = snap.cursor(CF_INDEX, None)?;
    it.seek(&[]);
    let mut batch = Batch::new();
    let mut current: Option<Vec<u8>> = None;
    let mut keeper_seen = false;
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let Some((user, _, rev)) = decode_index_key(k) else {
            it.next();
            continue;
        };
        if current.as_deref() != Some(user.as_slice()) {
            current = Some(user);
            keeper_seen = false;
        }
        if rev.main > target {
            it.next();
            continue;
        }
        let tomb = v == [TOMBSTONE];
        if !keeper_seen {
            keeper_seen = true;
            if tomb {
                batch.delete(CF_INDEX, k);
                if rev.main != target {
                    batch.delete(CF_KV, rev.kv_key(true));
                }
            }
        } else {
            batch.delete(CF_INDEX, k);
            batch.delete(CF_KV, Revision::kv_key(&rev, tomb));
        }
        if batch.len() >= BATCH_DELETES {
            db.write(std::mem::take(&mut batch), false)?;
        }
        it.next();
    }
    it.status()?;
    batch.put(CF_META, META_COMPACT_FINISHED, encode_u64(target as u64));
    db.write(batch, false)?;
    Ok(())
}
