#!/usr/bin/env bash
# Runs Berth's whole test suite on a fresh Debian machine: installs what the tests need (Consul
# into .tools/, the Docker Engine, load tools), builds every binary once in the dev profile, then
# runs unit tests and the end-to-end tests (real Consul, real Docker, the real binaries).
#
#   scripts/test.sh                 everything
#   scripts/test.sh -p berth-rules  extra arguments go to `cargo test`
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/setup.sh
# The e2e tests start the binaries from target/debug; build them in the same profile as the tests
# so nothing is compiled twice.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
