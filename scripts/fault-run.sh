#!/usr/bin/env bash
# A longer randomized fault run against a 3-member cluster of the real binary (kill -9, SIGSTOP,
# leader moves) that reports any lost or duplicated acknowledged write. CI runs a 15 s version.
#   scripts/fault-run.sh [SECONDS]        default 300; FAULT_RUN_SEED=<n> replays a run
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
if command -v sccache >/dev/null 2>&1; then export RUSTC_WRAPPER=sccache; fi
cargo build --bins --features metastore/failpoints
FAULT_RUN_SECS="${1:-300}" cargo test -p compat-tests --test cluster --features metastore/failpoints -- \
  --exact randomized_fault_run_loses_and_duplicates_nothing --nocapture
