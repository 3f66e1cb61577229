//! Consensus: the raft-rs node, its RocksDB-backed log, the proposal wait registry, and the network
//! seam to the peers (`network.rs`: gRPC `transport.rs`, or in-process for tests).
//!
//! This layer moves opaque entries; it knows nothing of keys, revisions or requests.

pub mod network;
pub mod node;
pub mod propose;
pub mod storage;
pub mod transport;

pub use node::{ApplyMsg, NodeConfig, NodeMsg, RaftHandle, RaftStatus};
pub use storage::RaftStorage;

/// A slog drain that forwards raft-rs's log records to `tracing`.
pub struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let msg = record.msg().to_string();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{msg}"),
            slog::Level::Warning => tracing::warn!(target: "raft", "{msg}"),
            slog::Level::Info => tracing::info!(target: "raft", "{msg}"),
            _ => tracing::debug!(target: "raft", "{msg}"),
        }
        Ok(())
    }
}

/// The logger raft-rs writes to.
pub fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}
