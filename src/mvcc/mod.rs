//! The MVCC keyspace with etcd's revision semantics, stored through the storage engine seam
//! (`storage::Engine`: RocksDB or memory; DESIGN.md §2).
//!
//! `revision` holds the key encodings, `store` the read side (Range), `write` the apply batch (Put,
//! DeleteRange), `latest` apply's cache of the newest version of recently written keys, `txn` transactions and their validation, `compact` physical compaction. Nothing here
//! knows about gRPC or raft.

pub mod compact;
pub mod hash;
pub mod latest;
pub mod revision;
pub mod store;
pub mod txn;
pub mod watch;
pub mod write;

pub use store::{KeyRange, KvRead, ReadView, Store};
pub use write::{KvWrite, WriteBatch};

// The same tests twice, once per storage engine (the file picks its engine by module name).
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
mod tests;
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "tests.rs"]
mod tests_on_memory;
