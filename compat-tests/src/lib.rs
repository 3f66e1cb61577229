//! Harness for the etcd compatibility tests.
//!
//! The tests in `compat-tests/tests/` start a real server process (the `metastore` binary by default,
//! real etcd with `COMPAT_TARGET=etcd`), talk to it through the `etcd-client` crate and through
//! `etcdctl` 3.4, and assert what etcd 3.4 itself answers. Every expectation is validated against
//! etcd first; the same tests then measure metastore.
//!
//! What lives here:
//! - [`target`]: which server binary runs (`COMPAT_TARGET`, `METASTORE_BIN`, `ETCD_BIN`).
//! - [`ports`]: free loopback ports.
//! - [`member`]: one server process with its own temp data dir and log ([`Member`], [`MemberBuilder`],
//!   [`MemberConfig`]); the config type is independent of the process so that a later cluster type can
//!   pick ports for several members and build one `--initial-cluster` string.
//! - [`process`]: running short-lived commands (etcdctl, `--version`) with a timeout.
//! - [`etcdctl`]: the `etcdctl` 3.4 wrapper.
//! - [`check`]: assertion helpers for gRPC errors and responses.
//! - [`http`]: plain HTTP/1.1 GETs for `/health`, `/version`, `/metrics`.
//! - [`certs`]: certificates made at test time (a CA, server/client certificates) and raw TLS
//!   handshakes.
//!
//! Invariants: everything binds to 127.0.0.1 on free ports, every data dir is a fresh temp dir, and the
//! harness only ever signals processes it started itself (by their PID, while it still owns them).

pub mod certs;
pub mod check;
pub mod cluster;
pub mod etcdctl;
pub mod http;
pub mod member;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod seeded;
pub mod target;
pub mod watch_util;

pub use check::{assert_grpc_code, assert_grpc_error, eventually, grpc_status, hdr, keys, values};
pub use cluster::Cluster;
pub use etcdctl::etcdctl;
pub use member::{Member, MemberBuilder, MemberConfig};
pub use process::CmdOutput;
pub use target::{is_etcd, skip_on_etcd, target, Target};
