//! The member: wires storage, MVCC, raft and apply together and offers the request paths to the API
//! layer (propose and wait, linearizable read barrier, reads on a snapshot, response headers).
//!
//! `start.rs` starts a member (and runs its background tasks: publishing its attributes, lease
//! expiry), `bootstrap.rs` gives a fresh data dir its identity (bootstrap, join, force-new-cluster),
//! `paths.rs` holds the request paths. The fields are private: the API reaches the parts through
//! accessors.
//!
//! Start-up: open the data dir; bootstrap a new cluster from the initial-cluster flags, or come back from
//! the data dir (the flags are then ignored); start the raft and apply threads; publish this member's
//! name and client URLs through raft; then serve.
//!
//! Invariants: handlers never block the async runtime (RocksDB reads run on the blocking pool) and never
//! wait on the raft or apply threads other than through channels with a deadline.

mod bootstrap;
mod paths;
mod start;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::{oneshot, watch};
use tokio::time::{timeout_at, Instant};

use crate::apply::{stored_applied_index, Applied, Applier, ApplyResult};
use crate::cluster::{self, LOCAL_CLUSTER_ID, LOCAL_MEMBER_ID};
use crate::config::{ClusterState, Config};
use crate::error::{Error, Result};
use crate::mvcc::compact::Compactor;
use crate::mvcc::watch::WatchHub;
use crate::mvcc::{ReadView, Store};
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::metastorepb::{
    internal_request::Request, InternalRequest, MemberAttributes, MemberRecord, MembersResponse,
};
use crate::raft::network::{MemNetwork, Network};
use crate::raft::propose::{IdGen, Wait};
use crate::raft::transport::{fetch_members, Dialer, Transport};
use crate::raft::{self as raftmod, NodeConfig, NodeMsg, RaftHandle, RaftStorage};
use crate::storage::{
    checkpoint, encode_u64, Batch, Db, Engine, Rocks, CF_LOCAL, CF_META, META_APPLIED_INDEX,
    META_APPLIED_TERM,
};

/// Most committed-but-unapplied entries before new proposals are refused (etcd's limit).
const MAX_GAP_BETWEEN_APPLY_AND_COMMIT: u64 = 5_000;

/// A running member.
pub struct EtcdServer {
    cfg: Config,
    /// The state database (keyspace, members, leases, applied index).
    db: Db,
    /// The raft log database.
    log_db: Rocks,
    store: Store,
    raft: RaftHandle,
    compactor: Compactor,
    /// Watchers of this member's keyspace (fed by apply).
    watch_hub: WatchHub,
    /// The gRPC peer transport: its dialer reaches the peers' Leader and Peer services.
    transport: Transport,
    /// How raft reaches the peers (the gRPC transport, or an in-process network in tests).
    network: Arc<dyn Network>,
    lessor: Arc<crate::lease::Lessor>,
    /// The applied alarms (for Status).
    alarms: crate::alarm::AlarmView,
    member_id: u64,
    cluster_id: u64,
    waits: Arc<Wait<ApplyResult>>,
    ids: IdGen,
    applied: watch::Receiver<u64>,
    threads: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The backend quota (`--quota-backend-bytes`).
    quota: crate::quota::Quota,
    /// Serializes Defragment calls.
    defrag_lock: tokio::sync::Mutex<()>,
    /// This member's metric families (`/metrics`).
    metrics: crate::metrics::Metrics,
}

impl EtcdServer {
    /// Stops the raft and apply threads (after the API has stopped).
    pub fn stop(&self) {
        let _ = self.raft.send(NodeMsg::Shutdown);
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        // Everything is in the raft log already; flushing makes the next start fast.
        for db in [&*self.db, &self.log_db as &dyn Engine] {
            if let Err(e) = db.flush() {
                tracing::warn!(error = %e, "flushing the database at shutdown failed");
            }
        }
    }

    /// A response header with this member's identity.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft.status.term(),
        }
    }

    /// Proposals waiting for their result on this member.
    pub fn proposals_pending(&self) -> usize {
        self.waits.len()
    }

    /// The applied raft index.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The configuration it was started with.
    pub fn cfg(&self) -> &Config {
        &self.cfg
    }

    /// The state database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The MVCC keyspace.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The raft node (its status, and the channel to its thread).
    pub fn raft(&self) -> &RaftHandle {
        &self.raft
    }

    /// The background compactor.
    pub fn compactor(&self) -> &Compactor {
        &self.compactor
    }

    /// The watchers of this member's keyspace.
    pub fn watch_hub(&self) -> &WatchHub {
        &self.watch_hub
    }

    /// The gRPC peer transport (its dialer reaches the peers' services).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// How raft reaches the peers.
    pub fn network(&self) -> &dyn Network {
        &*self.network
    }

    /// Lease expiry bookkeeping.
    pub fn lessor(&self) -> &crate::lease::Lessor {
        &self.lessor
    }

    /// The applied alarms.
    pub fn alarms(&self) -> &crate::alarm::AlarmView {
        &self.alarms
    }

    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// Serializes Defragment calls.
    pub fn defrag_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.defrag_lock
    }

    /// This member's metric families.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }
}
