#!/usr/bin/env bash
# berth-control's Consul watch at scale, on this machine, all traffic on 127.0.0.1.
#
#   bench/consul_scale.sh [--services 10000] [--instances 1] [--nodes 20] [--changes 20] [--change rule|instance]
#                        [--consul dev|server]
#   bench/consul_scale.sh --smoke        # --services 50 --changes 2: seconds; prints, records nothing
#
# Builds the release binaries, then berth-bench-consul-scale (bench/src/bin/consul_scale.rs)
# starts a Consul dev agent on its default limits, writes the services into its catalog, starts
# berth-control and reports: the time from start to the first full snapshot, the connections held
# to Consul, and per single change the Consul requests, service reads and control-plane CPU time,
# plus resident memory. Results go to stdout and to bench/results/<time>-consul-scale.txt.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
args=()
smoke=
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1; args+=(--services 50 --changes 2); shift ;;
    --services|--instances|--nodes|--changes|--change|--consul) args+=("$1" "$2"); shift 2 ;;
    *) echo "bench/consul_scale.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh consul >&2
cargo build --release --locked -p berth-control -p berth-bench >&2
bench="$root/target/release/berth-bench-consul-scale"

if [ -n "$smoke" ]; then
  exec "$bench" "${args[@]}"
fi

mkdir -p bench/results
report="bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-consul-scale.txt"
{
  echo "# Berth benchmark: the Consul watch at scale, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command: bench/consul_scale.sh${args[*]:+ ${args[*]}}"
  echo "machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "build: release; berth-control alone (no proxy connected), default flags"
  echo
  "$bench" "${args[@]}"
} | tee "$report"
echo "bench: written to $report" >&2
