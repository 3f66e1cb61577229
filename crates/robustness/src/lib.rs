//! metastore's robustness harness (issue 13), the checking half: a client history of etcd operations
//! (`history`), the etcd key-value model they are checked against (`model`), a linearizability
//! checker (`linearize`) in the style of Wing & Gong with Lowe's memoization, as porcupine does it,
//! and the watch guarantees of etcd's robustness suite (`watch`).
//!
//! The traffic generators and fault injectors that record histories from a running cluster build on
//! this; the checker is independent of them so that it can be shown to fail on hand-made histories.

pub mod history;
pub mod linearize;
pub mod model;
pub mod watch;

pub use history::{History, Op, Outcome, Request, Response};
pub use linearize::{check, Verdict};
pub use watch::{check_watches, Violation, WatchRecord, WatchResponse};
