#!/usr/bin/env bash
# Builds metastore (release) and starts a single member on 127.0.0.1:2379 with data in ./default.etcd.
# Extra arguments are passed to metastore (etcd's flags), e.g. scripts/start.sh --name n1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if command -v sccache >/dev/null 2>&1; then export RUSTC_WRAPPER=sccache; fi
cargo build --release --bin metastore
exec "${CARGO_TARGET_DIR:-target}/release/metastore" "$@"
