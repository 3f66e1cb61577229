//! etcd's backend quota: what a request costs against `--quota-backend-bytes`, and whether the state
//! database has room for it.
//!
//! Costs are etcd's estimates (a put is its key and value plus 256 bytes of metadata, a txn the larger
//! of its branches' top-level puts, a lease 64 bytes); a request that adds nothing always passes. The
//! database size is read again when the last reading is older than 100 ms, because reading RocksDB's
//! size properties on every write would cost more than the write's own bookkeeping. Over quota, the
//! server raises NOSPACE through raft (`EtcdServer::check_quota`); apply refuses what the alarm
//! forbids (`alarm.rs`, using the same costs).
//!
//! Invariant: a size read before a defragment finished is never kept after it ([`Quota::forget`]).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Instant;

use crate::proto::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};
use crate::storage::Db;

/// etcd's estimate of the metadata stored per key, added to a put's cost.
const KV_OVERHEAD: u64 = 256;
/// etcd's estimate of a lease's cost against the quota.
pub const LEASE_COST: u64 = 64;
/// How long a size reading is used.
const SIZE_MAX_AGE_MS: u64 = 100;

/// What a put adds to the backend, as etcd's quota estimates it.
pub fn put_cost(r: &PutRequest) -> u64 {
    KV_OVERHEAD + r.key.len() as u64 + r.value.len() as u64
}

/// What a txn adds to the backend, as etcd's quota estimates it: the larger of its branches' puts
/// (puts in nested txns are not counted, as in etcd). 0 for a txn that puts nothing.
pub fn txn_cost(t: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// The quota of one member's state database.
pub struct Quota {
    db: Db,
    limit: u64,
    /// The size last read, and when (ms since `started`; `u64::MAX`: read again).
    size: AtomicU64,
    size_at: AtomicU64,
    /// Bumped by `forget`: a reading taken before a bump is not stored after it.
    generation: AtomicU64,
    started: Instant,
}

impl Quota {
    pub fn new(db: Db, limit: u64) -> Quota {
        Quota {
            db,
            limit,
            size: AtomicU64::new(0),
            size_at: AtomicU64::new(u64::MAX),
            generation: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// The quota in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether a request adding `cost` bytes fits (a request adding nothing always does).
    pub fn admits(&self, cost: u64) -> bool {
        cost == 0 || self.size().saturating_add(cost) < self.limit
    }

    /// The state database's size, read again when the last reading is too old.
    fn size(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        let at = self.size_at.load(SeqCst);
        if at != u64::MAX && now.saturating_sub(at) < SIZE_MAX_AGE_MS {
            return self.size.load(SeqCst);
        }
        let generation = self.generation.load(SeqCst);
        let size = self.db.size_bytes();
        self.size.store(size, SeqCst);
        self.size_at.store(now, SeqCst);
        // A defragment finished while we read: our reading may predate it, do not keep it.
        if self.generation.load(SeqCst) != generation {
            self.size_at.store(u64::MAX, SeqCst);
        }
        size
    }

    /// Makes the next check read the size again (after a defragment).
    pub fn forget(&self) {
        self.generation.fetch_add(1, SeqCst);
        self.size_at.store(u64::MAX, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Batch, CF_KV};

    #[test]
    fn costs_are_etcds_estimates() {
        let p = PutRequest {
            key: b"k".to_vec(),
            value: vec![0; 10],
            ..Default::default()
        };
        assert_eq!(put_cost(&p), 256 + 1 + 10);
        let op = |p: &PutRequest| RequestOp {
            request: Some(request_op::Request::RequestPut(p.clone())),
        };
        let t = TxnRequest {
            success: vec![op(&p), op(&p)],
            failure: vec![op(&p)],
            ..Default::default()
        };
        assert_eq!(txn_cost(&t), 2 * 267);
        assert_eq!(txn_cost(&TxnRequest::default()), 0);
    }

    #[test]
    fn a_full_database_refuses_what_does_not_fit() {
        let db = Db::memory();
        let q = Quota::new(db.clone(), 1000);
        assert!(q.admits(999));
        assert!(!q.admits(1000));
        let mut b = Batch::new();
        b.put(CF_KV, b"k".to_vec(), vec![0; 900]);
        db.write(b, false).unwrap();
        q.forget();
        assert!(!q.admits(200));
        assert!(q.admits(0), "a request adding nothing always passes");
    }
}
