#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the compat tests (the real binary driven by the etcd-client
# crate and by etcdctl 3.4) and etcd 3.4's own e2e tests that metastore passes
# (scripts/etcd-e2e/passing.txt). One debug build (with the `failpoints` feature) serves all three. It also fails on a format or
# clippy finding, and on a cargo-deny finding (licenses, bans, sources; deny.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
if command -v sccache >/dev/null 2>&1; then export RUSTC_WRAPPER=sccache; fi
cargo fmt --all -- --check
# One build for everything, with the fail points the robustness tests arm (release builds lack them).
F=(--features metastore/failpoints)
cargo build --workspace --bins --tests "${F[@]}"
cargo clippy --workspace --all-targets "${F[@]}" -- -D warnings
scripts/deny.sh
cargo test --workspace --no-fail-fast "${F[@]}"
scripts/etcd-e2e.sh scripts/etcd-e2e/passing.txt target/debug/metastore
# The e2e tests that check answers only etcd 3.4 gives, with metastore answering as 3.4.23.
METASTORE_ETCD_VERSION=3.4.23 scripts/etcd-e2e.sh scripts/etcd-e2e/passing-as-3.4.txt target/debug/metastore
