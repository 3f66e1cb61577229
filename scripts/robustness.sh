#!/usr/bin/env bash
# The robustness harness's long run: concurrent clients and a watcher on a 3-member cluster of the
# real binary under kill -9, SIGSTOP/SIGCONT and leader moves; the history is checked for
# linearizability, the watch streams for etcd's guarantees, the members for equal HashKV
# (compat-tests/tests/robustness.rs). CI runs a 20 s version.
#   scripts/robustness.sh [MINUTES] [SEED]    default 5 minutes, a random seed (printed, to replay)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
if command -v sccache >/dev/null 2>&1; then export RUSTC_WRAPPER=sccache; fi
cargo build --bins --features metastore/failpoints
export ROBUSTNESS_SECS=$(( ${1:-5} * 60 ))
if [[ -n "${2:-}" ]]; then export ROBUSTNESS_SEED=$2; fi
cargo test -p compat-tests --test robustness --features metastore/failpoints -- --nocapture
