#!/usr/bin/env bash
# etcd-e2e.sh — run etcd 3.4.23's own end-to-end tests (tests/e2e from Debian's
# golang-etcd-server-dev) against a server binary, each test in its own process, with no adapter:
# the harness starts <bin-dir>/etcd with etcd's flags and drives it with etcdctl 3.4 and curl.
#
# usage: etcd-e2e.sh TEST_LIST [SERVER_BINARY]
#   TEST_LIST      file with one test name per line ("TestCtlV3Put"); '#' starts a comment.
#                  scripts/etcd-e2e/passing.txt is what metastore passes (run by scripts/test.sh);
#                  scripts/etcd-e2e/categories.tsv lists all 243 tests and what each needs.
#                  Against real etcd: etcd-e2e.sh LIST /usr/bin/etcd
#   SERVER_BINARY  the server under test, laid out as <bin-dir>/etcd
#                  (default: ${CARGO_TARGET_DIR:-target}/debug/metastore)
# environment:
#   E2E_TIMEOUT    seconds per test before it is killed (default 120)
#   E2E_LOG_DIR    where the output of failed tests is kept (default <cache>/logs/<timestamp>)
#   E2E_CACHE      build cache (default ${CARGO_TARGET_DIR:-target}/etcd-e2e)
#   E2E_ETCDCTL    etcdctl to use (default /usr/bin/etcdctl, Debian's etcd-client 3.4.23)
#   E2E_GOFLAGS    GOFLAGS for the one-time build of the test binary (default -p=1)
#   E2E_VERBOSE=1  also print the output of failed tests to stdout
#   EXPECT_DEBUG   set to 1 by default so the kept logs show every line the
#                  servers/etcdctl/curl printed (E2E_EXPECT_DEBUG=0 turns it off)
#   Any other variable is passed through to the servers, e.g.
#   METASTORE_ETCD_VERSION=3.4.23 (what etcdctl 3.4 / the /metrics checks expect).
#
# Prints one line per test: "PASS|FAIL|SKIP <name> <seconds>s", then
# "N skipped" (only if some were skipped) and finally exactly "N passed, N failed".
# Exits non-zero if any test failed (or none ran).
#
# Everything listens on loopback (the harness uses localhost:20000-20031,
# localhost:10000-10001 for make-mirror, 127.0.0.1:23790 for the gateway), so
# runs are serialised with flock on ${TMPDIR:-/tmp}/etcd-e2e.lock. Processes: each test runs under
# `setsid -w timeout --kill-after`; the harness starts servers/etcdctl/curl on
# their own ptys (new sessions), so after each test every process that carries
# this run's token in its environment (E2E_RUN_TOKEN, inherited by all of the
# test's descendants) is killed — nothing else.

set -u
set -o pipefail

die() { echo "etcd-e2e: $*" >&2; exit 2; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 TEST_LIST [SERVER_BINARY]"
LIST=$1
[ -r "$LIST" ] || die "cannot read test list $LIST"

TARGET_DIR=${CARGO_TARGET_DIR:-target}
SERVER=${2:-$TARGET_DIR/debug/metastore}
[ -x "$SERVER" ] || die "server binary $SERVER not found or not executable"
CACHE=${E2E_CACHE:-$TARGET_DIR/etcd-e2e}
TIMEOUT=${E2E_TIMEOUT:-120}
ETCDCTL=${E2E_ETCDCTL:-/usr/bin/etcdctl}
ETCD_SRC=/usr/share/gocode/src/go.etcd.io/etcd

mkdir -p "$CACHE" || die "cannot create $CACHE"
CACHE=$(cd "$CACHE" && pwd)
SERVER=$(cd "$(dirname "$SERVER")" && pwd)/$(basename "$SERVER")

# ---- 1. packages (apt-get only when something is missing) ----
need=()
for p in golang-go golang-etcd-server-dev etcd-client curl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "etcd-e2e: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
        { apt-get update >&2 && apt-get install -y --no-install-recommends "${need[@]}" >&2; } ||
        die "apt-get install ${need[*]} failed"
fi
[ -d "$ETCD_SRC/tests/e2e" ] || die "$ETCD_SRC/tests/e2e missing (golang-etcd-server-dev)"
[ -x "$ETCDCTL" ] || die "$ETCDCTL missing (etcd-client)"

# ---- 2. the e2e test binary, built once (GOPATH mode, offline) ----
E2E=$CACHE/e2e.test
GP=$CACHE/gopath
if [ ! -x "$E2E" ]; then
    echo "etcd-e2e: building $E2E (takes a few minutes)" >&2
    rm -rf "$GP"
    mkdir -p "$GP/src/go.etcd.io/etcd/tests" "$GP/src/go.etcd.io/etcd/integration"
    cp -r "$ETCD_SRC/tests/e2e" "$GP/src/go.etcd.io/etcd/tests/" &&
    cp -r "$ETCD_SRC/integration/fixtures" "$GP/src/go.etcd.io/etcd/integration/" ||
        die "copying the e2e sources failed"
    ( cd "$GP/src/go.etcd.io/etcd/tests/e2e" &&
      GO111MODULE=off GOPROXY=off GOFLAGS=${E2E_GOFLAGS:--p=1} GOCACHE=$CACHE/gocache \
      GOPATH=$GP:/usr/share/gocode nice go test -c -o "$E2E.tmp" ) >&2 ||
        die "building the e2e test binary failed"
    mv "$E2E.tmp" "$E2E"
    rm -rf "$CACHE/gocache"   # ~115 MB, only needed for this one build
fi
FIXTURES=$GP/src/go.etcd.io/etcd/integration/fixtures
# TestEtcdExampleConfig runs `etcd --config-file ../../etcd.conf.yml.sample`; Debian's
# source package lacks that file, so write an etcd-3.4-compatible one (listens on
# localhost:2379/2380, data in the test's working directory).
if [ ! -f "$CACHE/etcd.conf.yml.sample" ]; then
    cat > "$CACHE/etcd.conf.yml.sample" <<'YAML'
# etcd 3.4-compatible subset of etcd's etcd.conf.yml.sample (used by TestEtcdExampleConfig)
name: 'default'
data-dir:
wal-dir:
snapshot-count: 10000
heartbeat-interval: 100
election-timeout: 1000
quota-backend-bytes: 0
listen-peer-urls: http://localhost:2380
listen-client-urls: http://localhost:2379
max-snapshots: 5
max-wals: 5
cors:
initial-advertise-peer-urls: http://localhost:2380
advertise-client-urls: http://localhost:2379
discovery:
discovery-fallback: 'proxy'
discovery-proxy:
discovery-srv:
initial-cluster:
initial-cluster-token: 'etcd-cluster'
initial-cluster-state: 'new'
strict-reconfig-check: false
enable-v2: true
enable-pprof: true
proxy: 'off'
proxy-failure-wait: 5000
proxy-refresh-interval: 30000
proxy-dial-timeout: 1000
proxy-write-timeout: 5000
proxy-read-timeout: 0
client-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
peer-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
debug: false
logger: zap
log-outputs: [stderr]
force-new-cluster: false
auto-compaction-mode: periodic
auto-compaction-retention: "1"
YAML
fi
[ -d "$FIXTURES" ] || die "$FIXTURES missing; remove $E2E to rebuild"

# one run at a time per machine: the harness's ports are fixed
exec 9> "${TMPDIR:-/tmp}/etcd-e2e.lock"
flock -n 9 || { echo "etcd-e2e: waiting for another etcd-e2e run to finish" >&2; flock 9; }

# ---- 3. bin-dir: <bin>/etcd is the server under test, <bin>/etcdctl Debian's ----
RUN=$(mktemp -d "${TMPDIR:-/tmp}/etcd-e2e.XXXXXX") || die "mktemp failed"
BIN=$RUN/bin
mkdir -p "$BIN"
cp "$SERVER" "$BIN/etcd" || die "copying $SERVER failed"   # a copy: the original may be rebuilt meanwhile
ln -s "$ETCDCTL" "$BIN/etcdctl"
# No <bin>/etcd-last-release: TestReleaseUpgrade* skip themselves.

LOG_DIR=${E2E_LOG_DIR:-$CACHE/logs/$(date -u +%Y%m%dT%H%M%SZ)}

TOKEN="etcd-e2e-$$-$RANDOM$RANDOM"
EXPECT_DBG=1
[ "${E2E_EXPECT_DEBUG:-1}" = 0 ] && EXPECT_DBG=

# Kill every process whose environment carries this run's token (only ours).
sweep() {
    local sig=${1:-KILL} e pid
    for e in /proc/[0-9]*/environ; do
        pid=${e#/proc/}; pid=${pid%/environ}
        [ "$pid" = "$$" ] && continue
        if grep -qzx "E2E_RUN_TOKEN=$TOKEN" "$e" 2>/dev/null; then
            kill "-$sig" "$pid" 2>/dev/null
        fi
    done
}
cleanup() { sweep KILL; sleep 0.2; sweep KILL; rm -rf "$RUN"; }
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

pass=0 fail=0 skip=0
while IFS= read -r line || [ -n "$line" ]; do
    name=${line%%#*}
    name=$(echo "$name" | tr -d '[:space:]')
    [ -n "$name" ] || continue

    W=$RUN/work/$name
    # the harness resolves ../../integration/fixtures (certs, JWT keys) and
    # ../../etcd.conf.yml.sample relative to its working directory
    mkdir -p "$W/tests/e2e" "$W/integration" "$W/tmp"
    ln -s "$FIXTURES" "$W/integration/fixtures"
    [ -f "$CACHE/etcd.conf.yml.sample" ] && ln -s "$CACHE/etcd.conf.yml.sample" "$W/etcd.conf.yml.sample"
    log=$W/output.log

    start=$(date +%s.%N)
    ( cd "$W/tests/e2e" &&
      exec env E2E_RUN_TOKEN="$TOKEN" E2E_TEST_NAME="$name" TMPDIR="$W/tmp" \
        EXPECT_DEBUG="$EXPECT_DBG" \
        setsid -w timeout --kill-after=10 "$TIMEOUT" \
        "$E2E" -test.run "^${name}\$" -bin-dir "$BIN" -test.v ) > "$log" 2>&1 < /dev/null
    rc=$?
    sweep KILL
    end=$(date +%s.%N)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')

    # (not anchored at ^: with EXPECT_DEBUG a child's last line may lack its newline)
    if [ $rc -eq 0 ] && grep -aq -- "--- SKIP: $name (" "$log"; then
        status=SKIP; skip=$((skip+1))
    elif [ $rc -eq 0 ] && grep -aq -- "--- PASS: $name (" "$log"; then
        status=PASS; pass=$((pass+1))
    else
        status=FAIL; fail=$((fail+1))
        [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "etcd-e2e: killed after ${TIMEOUT}s (rc=$rc)" >> "$log"
        grep -aq -- "--- \(PASS\|FAIL\|SKIP\): $name (" "$log" || echo "etcd-e2e: no result line for $name (rc=$rc; unknown test name?)" >> "$log"
        mkdir -p "$LOG_DIR" && cp "$log" "$LOG_DIR/$name.log"
        [ "${E2E_VERBOSE:-0}" = 1 ] && sed "s/^/    | /" "$log"
    fi
    echo "$status $name ${secs}s"
    rm -rf "$W"
done < "$LIST"

[ $fail -gt 0 ] && echo "failed tests' output: $LOG_DIR" >&2
[ $skip -gt 0 ] && echo "$skip skipped"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ $((pass+skip)) -gt 0 ]
