#!/usr/bin/env bash
# Superseded by bench/bench.sh (one command for every part of the benchmark suite); kept so old
# instructions still work. `bench/run.sh` = `bench/bench.sh --full`; arguments are passed on.
exec "$(dirname "${BASH_SOURCE[0]}")/bench.sh" "$@"
