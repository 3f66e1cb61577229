//! Apply: committed raft entries become state changes, in log order, on one thread.
//!
//! Each batch of committed entries is applied into one MVCC [`WriteBatch`], which also carries the applied
//! raft index; then the batch is written, readers see the new revision, and the results go to the
//! handlers waiting on this member. Apply is deterministic: it reads nothing but the log and the state.
//!
//! Invariants: an entry at or below the stored applied index is skipped (replay after a crash is
//! idempotent); waiters are woken only after the write that holds their result; the raft log is
//! compacted only behind applied state that was synced first.

use std::sync::mpsc;
use std::sync::Arc;

use prost::Message;
use raft::eraftpb::{Entry, EntryType};
use tokio::sync::watch;

use crate::cluster::{get_member, put_member};
use crate::error::{Error, Result};
use crate::mvcc::compact::Compactor;
use crate::mvcc::txn::run_txn;
use crate::mvcc::{KvWrite, Store, WriteBatch};
use crate::proto::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, PutResponse, ResponseHeader, TxnResponse,
};
use crate::proto::metastorepb::{internal_request::Request, InternalRequest, MemberRecord};
use crate::raft::propose::Wait;
use crate::raft::{NodeMsg, RaftHandle};
use crate::storage::{encode_u64, CF_META};

/// `meta` CF names owned by apply.
pub const META_APPLIED_INDEX: &[u8] = b"consistent_index";
pub const META_APPLIED_TERM: &[u8] = b"applied_term";

/// Raft entries kept behind the applied index when the log is compacted (for slow followers).
const LOG_KEEP: u64 = 5_000;

/// What an applied request produced.
#[derive(Debug)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// A compaction was scheduled at `revision`; `header.revision` is the current revision.
    Compact {
        resp: CompactionResponse,
        revision: i64,
    },
    Member,
}

pub type ApplyResult = Result<Applied>;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// The apply thread's state.
pub struct Applier {
    pub store: Store,
    pub waits: Arc<Wait<ApplyResult>>,
    pub compactor: Compactor,
    pub raft: RaftHandle,
    pub applied_tx: watch::Sender<u64>,
    pub snapshot_count: u64,
    pub applied: u64,
    pub last_log_compaction: u64,
}

impl Applier {
    /// Runs until the node thread hangs up.
    pub fn run(mut self, rx: mpsc::Receiver<Vec<Entry>>) {
        while let Ok(mut entries) = rx.recv() {
            // Coalesce what is already queued into one write.
            while entries.len() < 4096 {
                match rx.try_recv() {
                    Ok(more) => entries.extend(more),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.apply_batch(entries) {
                tracing::error!(error = %e, "apply failed, stopping");
                std::process::exit(2);
            }
        }
    }

    fn apply_batch(&mut self, entries: Vec<Entry>) -> Result<()> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let (last_index, last_term) = (last.index, last.term);
        if last_index <= self.applied {
            return Ok(());
        }
        let mut wb = WriteBatch::new(&self.store);
        let mut results = Vec::new();
        for e in &entries {
            if e.index <= self.applied || e.data.is_empty() {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    let req = InternalRequest::decode(e.data.as_ref())?;
                    let result = self.apply_one(&mut wb, req.request);
                    results.push((req.id, result));
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    tracing::warn!(index = e.index, "membership changes are not supported yet");
                }
            }
        }
        let meta = [
            (META_APPLIED_INDEX, encode_u64(last_index).to_vec()),
            (META_APPLIED_TERM, encode_u64(last_term).to_vec()),
        ];
        let (_rev, _events, compaction) = wb.finish(&meta)?;
        self.applied = last_index;
        if let Some(rev) = compaction {
            self.compactor.schedule(rev);
        }
        self.applied_tx.send_replace(last_index);
        for (id, r) in results {
            self.waits.trigger(id, r);
        }
        let _ = self.raft.send(NodeMsg::Applied(last_index));
        if last_index >= self.last_log_compaction + self.snapshot_count.max(1) {
            self.store.db().sync_wal()?;
            self.last_log_compaction = last_index;
            let _ = self
                .raft
                .send(NodeMsg::CompactLog(last_index.saturating_sub(LOG_KEEP)));
        }
        Ok(())
    }

    fn apply_one(&self, wb: &mut WriteBatch<'_>, req: Option<Request>) -> ApplyResult {
        let Some(req) = req else {
            return Err(Error::Internal("empty internal request".into()));
        };
        match req {
            Request::Put(p) => {
                let r = wb.put(&p);
                let rev = wb.end_txn();
                r.map(|mut r| {
                    r.header = header(rev);
                    Applied::Put(r)
                })
            }
            Request::DeleteRange(d) => {
                let r = wb.delete_range(&d);
                let rev = wb.end_txn();
                r.map(|mut r| {
                    r.header = header(rev);
                    Applied::DeleteRange(r)
                })
            }
            Request::Txn(t) => {
                let r = run_txn(wb, &t);
                wb.end_txn();
                r.map(Applied::Txn)
            }
            Request::Compaction(c) => {
                let current = wb.compact(&c)?;
                Ok(Applied::Compact {
                    resp: CompactionResponse {
                        header: header(current),
                    },
                    revision: c.revision,
                })
            }
            Request::MemberAttributes(a) => {
                let db = self.store.db().clone();
                let Some(mut m) = get_member(&db, a.member_id)? else {
                    return Err(Error::MemberNotFound);
                };
                m.name = a.name;
                m.client_urls = a.client_urls;
                put_member(&db, wb.raw(), &MemberRecord { ..m })?;
                Ok(Applied::Member)
            }
        }
    }
}

/// The applied index stored with the data (0 on a fresh data dir).
pub fn stored_applied_index(store: &Store) -> Result<u64> {
    store.db().get_u64(CF_META, META_APPLIED_INDEX)
}
