#!/usr/bin/env bash
# Runs cargo-deny (licenses, bans, sources; see deny.toml), installing it from crates.io into
# ${CARGO_TARGET_DIR:-target}/tools when missing. The advisories check needs the RustSec advisory
# database, a git repository on GitHub that this project's machines cannot reach, so it runs only
# when DENY_ADVISORIES=1 (on a machine with that access).
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${CARGO_TARGET_DIR:-target}/tools
deny=$(command -v cargo-deny || true)
if [ -z "$deny" ]; then
  deny=$tools/bin/cargo-deny
  if [ ! -x "$deny" ]; then
    echo "deny.sh: installing cargo-deny into $tools (once)" >&2
    cargo install --locked --quiet cargo-deny --version '^0.20' --root "$tools"
  fi
fi
checks=(bans licenses sources)
if [ "${DENY_ADVISORIES:-0}" = 1 ]; then checks+=(advisories); fi
"$deny" deny check --hide-inclusion-graph "${checks[@]}"
