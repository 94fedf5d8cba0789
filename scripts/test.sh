#!/usr/bin/env bash
# Runs Berth's whole test suite on a fresh Debian machine: installs what the tests need (Consul
# into .tools/, the Docker Engine, load tools), builds every binary once in the dev profile, then
# runs unit tests and the end-to-end tests (real Consul, real Docker, the real binaries).
#
#   scripts/test.sh                 everything
#   scripts/test.sh -p berth-rules  extra arguments go to `cargo test`
#
# A Docker Engine that this script had to start is stopped again when it ends; one that was
# already running is left alone.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

engine_was_up=
docker info >/dev/null 2>&1 && engine_was_up=1
stop_started_engine() {
  local pidfile="$root/.tools/dockerd/dockerd.pid"
  if [ -z "$engine_was_up" ] && [ -s "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    echo "test: stopping the Docker Engine this run started (pid $pid)" >&2
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
trap stop_started_engine EXIT

bash scripts/setup.sh
# The e2e tests start the binaries from target/debug; build them in the same profile as the tests
# so nothing is compiled twice.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
