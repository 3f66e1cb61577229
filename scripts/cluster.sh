#!/usr/bin/env bash
# Starts a 3-member metastore cluster on loopback, in the foreground; Ctrl-C stops all three.
#   scripts/cluster.sh              members m1 m2 m3, clients on 127.0.0.1:2379, 22379, 32379,
#                                   peers on 127.0.0.1:2380, 22380, 32380, data in ./cluster-data/
# Environment: METASTORE_BIN (default: build the release binary), CLUSTER_DATA (data dir root),
# CLUSTER_PORT_BASE (use BASE+0/1, BASE+10/11, BASE+20/21 instead of etcd's Procfile ports).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${METASTORE_BIN:-}" ]]; then
  scripts/setup.sh
  if command -v sccache >/dev/null 2>&1; then export RUSTC_WRAPPER=sccache; fi
  cargo build --release --bin metastore
  METASTORE_BIN="${CARGO_TARGET_DIR:-target}/release/metastore"
fi
data="${CLUSTER_DATA:-cluster-data}"
mkdir -p "$data"
if [[ -n "${CLUSTER_PORT_BASE:-}" ]]; then
  b=$CLUSTER_PORT_BASE
  cp=($b $((b + 10)) $((b + 20))); pp=($((b + 1)) $((b + 11)) $((b + 21)))
else
  cp=(2379 22379 32379); pp=(2380 22380 32380)
fi
cluster="m1=http://127.0.0.1:${pp[0]},m2=http://127.0.0.1:${pp[1]},m3=http://127.0.0.1:${pp[2]}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in 0 1 2; do
  n="m$((i + 1))"
  "$METASTORE_BIN" --name "$n" --data-dir "$data/$n.etcd" \
    --listen-client-urls "http://127.0.0.1:${cp[$i]}" --advertise-client-urls "http://127.0.0.1:${cp[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${pp[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${pp[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-token metastore-local --initial-cluster-state new \
    2>&1 | sed "s/^/$n | /" &
  pids+=($!)
done
echo "cluster: endpoints 127.0.0.1:${cp[0]},127.0.0.1:${cp[1]},127.0.0.1:${cp[2]}" >&2
wait
