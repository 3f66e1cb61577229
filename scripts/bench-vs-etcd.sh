#!/usr/bin/env bash
# Side-by-side benchmark of etcd and metastore on this machine, in one run, with the same client
# (`metastore bench`, which speaks etcd's gRPC API). Fresh data dirs, fsync on (both servers' default),
# equal settings; each row alternates between the two servers over 3 rounds. Prints a markdown table with the ratio
# metastore/etcd per row (higher is better for throughput, lower for latency).
#
#   scripts/bench-vs-etcd.sh [--quick] [--no-cluster] [--no-footprint]
#     --quick         fewer requests per row (a smoke run)
#     --no-cluster    single member only (skip the 3-member rows)
#     --no-footprint  skip RSS / data size / restart time with 1M keys
# Environment: ETCD_BIN (default /usr/bin/etcd, installed from Debian's etcd-server if missing),
# METASTORE_BIN (default: build the release binary), BENCH_DIR (work dir, default a temp dir),
# STEP_TIMEOUT (seconds any one benchmark or etcdctl step may take, default 600).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0; cluster=1; footprint=1
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --no-cluster) cluster=0 ;;
    --no-footprint) footprint=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

scripts/setup.sh
if ! command -v "${ETCD_BIN:-etcd}" >/dev/null 2>&1 && [[ ! -x /usr/bin/etcd ]]; then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get install -y --no-install-recommends etcd-server >/dev/null
fi
ETCD_BIN="${ETCD_BIN:-/usr/bin/etcd}"
if [[ -z "${METASTORE_BIN:-}" ]]; then
  if command -v sccache >/dev/null 2>&1; then export RUSTC_WRAPPER=sccache; fi
  cargo build --release --bin metastore
  METASTORE_BIN="${CARGO_TARGET_DIR:-target}/release/metastore"
fi
work="${BENCH_DIR:-$(mktemp -d /tmp/bench-vs-etcd.XXXXXX)}"
mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

if ((quick)); then N1=300; NM=3000; ROUNDS=1; else N1=6000; NM=60000; ROUNDS=3; fi

# 20 distinct free loopback ports (client and peer ports of up to 4 servers of each kind).
read -r -a P <<<"$(python3 - <<'PY'
import socket
ss = [socket.socket() for _ in range(20)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
PY
)"
ETCD_VERSION=$("$ETCD_BIN" --version | sed -n 's/^etcd Version: //p')

# start <kind> <name> <client port> <peer port> <initial-cluster> <data dir> -> pid in $started
start() {
  local kind=$1 name=$2 cp=$3 pp=$4 ic=$5 dir=$6 bin
  if [[ $kind == etcd ]]; then bin=$ETCD_BIN; else bin=$METASTORE_BIN; fi
  "$bin" --name "$name" --data-dir "$dir" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "$ic" --initial-cluster-token "bench-$kind" --initial-cluster-state new \
    --quota-backend-bytes 8589934592 >"$dir.log" 2>&1 &
  started=$!
  pids+=("$started")
}

wait_ready() { # endpoint
  for _ in $(seq 1 300); do
    if ETCDCTL_API=3 timeout 10 etcdctl --endpoints="$1" endpoint health >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "server at $1 did not become healthy" >&2; return 1
}

# Every step is bounded, so that a stuck server or client fails the run instead of hanging it.
STEP_TIMEOUT=${STEP_TIMEOUT:-600}
bench() { # endpoint args... -> JSON line
  timeout "$STEP_TIMEOUT" "$METASTORE_BIN" bench --endpoints "$1" "${@:2}" | tail -n 1
}

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

rows=()
row() { # label etcd_json metastore_json
  local e=$2 m=$3
  local er mr ep mp
  er=$(field "$e" rps); mr=$(field "$m" rps); ep=$(field "$e" p99_ms); mp=$(field "$m" p99_ms)
  local ratio pr
  ratio=$(python3 -c "print(f'{$mr/$er:.2f}x' if $er>0 else 'n/a')")
  pr=$(python3 -c "print(f'{$mp/$ep:.2f}x' if $ep>0 else 'n/a')")
  rows+=("| $1 | $(printf %.0f "$er") | $(printf %.0f "$mr") | **$ratio** | $(printf %.2f "$ep") | $(printf %.2f "$mp") | $pr |")
  echo "done: $1 (etcd $er req/s, metastore $mr req/s)" >&2
}

# Merges the JSON lines of several rounds: throughput over all of them, the median round's p99.
merge() {
  python3 - "$@" <<'PY'
import json, statistics, sys
rs = [json.loads(a) for a in sys.argv[1:]]
req = sum(r["requests"] for r in rs)
sec = sum(r["seconds"] for r in rs)
print(json.dumps({"rps": req / sec if sec > 0 else 0, "p99_ms": statistics.median(r["p99_ms"] for r in rs)}))
PY
}

# pair <label> <total requests> <bench args...>: etcd and metastore take turns for $ROUNDS rounds
# (so that drift of the machine, e.g. the disk's fsync latency, hits both alike), then one row.
pair() {
  local label=$1 total=$2
  shift 2
  local es=() ms=() r
  for ((r = 0; r < ROUNDS; r++)); do
    es+=("$(bench "$E" --total $((total / ROUNDS)) "$@")")
    ms+=("$(bench "$M" --total $((total / ROUNDS)) "$@")")
  done
  row "$label" "$(merge "${es[@]}")" "$(merge "${ms[@]}")"
}

matrix() { # label-prefix etcd-endpoint metastore-endpoint
  local p=$1 E=$2 M=$3
  local put=(put --key-size 8 --val-size 256 --key-space-size 100000)
  pair "$p put, 1 client / 1 conn" $N1 --conns 1 --clients 1 "${put[@]}"
  pair "$p put, 64 clients / 8 conns" $NM --conns 8 --clients 64 "${put[@]}"
  pair "$p put, 256 clients / 16 conns" $NM --conns 16 --clients 256 "${put[@]}"
  pair "$p range linearizable, 64 clients" $NM --conns 8 --clients 64 range 00000001 --consistency l
  pair "$p range serializable, 64 clients" $NM --conns 8 --clients 64 range 00000001 --consistency s
  pair "$p txn-put, 64 clients" $NM --conns 8 --clients 64 txn-put --key-size 8 --val-size 256 --key-space-size 100000
  pair "$p watch latency (put -> event), 1 client" $N1 watch-latency --val-size 256
}

echo "single member: etcd $ETCD_VERSION vs metastore ($("$METASTORE_BIN" --version | head -1))" >&2
start etcd e1 "${P[0]}" "${P[1]}" "e1=http://127.0.0.1:${P[1]}" "$work/etcd1"; epid=$started
start metastore m1 "${P[2]}" "${P[3]}" "m1=http://127.0.0.1:${P[3]}" "$work/ms1"; mpid=$started
wait_ready "127.0.0.1:${P[0]}"; wait_ready "127.0.0.1:${P[2]}"
matrix "1 member:" "127.0.0.1:${P[0]}" "127.0.0.1:${P[2]}"

foot=()
if ((footprint)); then
  # 1M keys, then RSS, data size, and restart time to the first linearizable read.
  keys=1000000; ((quick)) && keys=100000
  for kind in etcd metastore; do
    if [[ $kind == etcd ]]; then ep=127.0.0.1:${P[0]}; pid=$epid; dir=$work/etcd1; else ep=127.0.0.1:${P[2]}; pid=$mpid; dir=$work/ms1; fi
    bench "$ep" --conns 16 --clients 256 --total $keys put --key-size 8 --val-size 256 --key-space-size $keys --sequential-keys >/dev/null
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    size=$(du -sk "$dir" | awk '{print $1}')
    kill "$pid"; wait "$pid" 2>/dev/null || true
    t0=$(date +%s.%N)
    if [[ $kind == etcd ]]; then start etcd e1 "${P[0]}" "${P[1]}" "e1=http://127.0.0.1:${P[1]}" "$dir"; epid=$started
    else start metastore m1 "${P[2]}" "${P[3]}" "m1=http://127.0.0.1:${P[3]}" "$dir"; mpid=$started; fi
    for _ in $(seq 1 600); do
      if ETCDCTL_API=3 timeout 10 etcdctl --endpoints="$ep" get 00000001 >/dev/null 2>&1; then break; fi
      sleep 0.05
    done
    t1=$(date +%s.%N)
    foot+=("$kind $rss $size $(python3 -c "print(f'{$t1-$t0:.2f}')")")
  done
fi
kill "$epid" "$mpid" 2>/dev/null || true

if ((cluster)); then
  # etcd member i: client P[4+i], peer P[8+i]; metastore member i: client P[12+i], peer P[16+i].
  ic_e=""; ic_m=""; ee=""; me=""
  for i in 1 2 3; do
    ic_e+="${ic_e:+,}e$i=http://127.0.0.1:${P[8 + i]}"; ee+="${ee:+,}127.0.0.1:${P[4 + i]}"
    ic_m+="${ic_m:+,}m$i=http://127.0.0.1:${P[16 + i]}"; me+="${me:+,}127.0.0.1:${P[12 + i]}"
  done
  for i in 1 2 3; do
    start etcd "e$i" "${P[4 + i]}" "${P[8 + i]}" "$ic_e" "$work/etcd3-$i"
    start metastore "m$i" "${P[12 + i]}" "${P[16 + i]}" "$ic_m" "$work/ms3-$i"
  done
  for i in 1 2 3; do wait_ready "127.0.0.1:${P[4 + i]}"; wait_ready "127.0.0.1:${P[12 + i]}"; done
  leader() { # endpoints -> the leader's endpoint
    ETCDCTL_API=3 timeout 30 etcdctl --endpoints="$1" endpoint status -w json |
      python3 -c "import json,sys; s=json.load(sys.stdin); print([x['Endpoint'] for x in s if x['Status']['leader']==x['Status']['header']['member_id']][0])"
  }
  EL=$(leader "$ee")
  ML=$(leader "$me")
  matrix "3 members:" "$EL" "$ML"
fi

echo
echo "etcd $ETCD_VERSION vs metastore $("$METASTORE_BIN" --version | sed -n 's/^metastore Version: //p'), $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| benchmark | etcd req/s | metastore req/s | ratio | etcd p99 ms | metastore p99 ms | p99 ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
if ((${#foot[@]})); then
  echo
  echo "| footprint with ${keys} keys | etcd | metastore |"
  echo "|---|---:|---:|"
  read -r _ ers esz ert <<<"${foot[0]}"; read -r _ mrs msz mrt <<<"${foot[1]}"
  echo "| RSS (MiB) | $((ers / 1024)) | $((mrs / 1024)) |"
  echo "| data dir (MiB) | $((esz / 1024)) | $((msz / 1024)) |"
  echo "| restart to first linearizable read (s) | $ert | $mrt |"
fi
