#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the compat tests (the real binary driven by the etcd-client
# crate and by etcdctl 3.4). One debug build serves both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
if command -v sccache >/dev/null 2>&1; then export RUSTC_WRAPPER=sccache; fi
cargo build --workspace --bins --tests
cargo test --workspace --no-fail-fast
