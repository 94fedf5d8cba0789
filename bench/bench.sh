#!/usr/bin/env bash
# Berth's benchmark suite, one command: every part of issue 11, on this machine, all traffic on
# 127.0.0.1, every load bounded in count and time.
#
#   bench/bench.sh                       # --full: every part at the issue's sizes (about an hour)
#   bench/bench.sh --quick               # the same parts, smaller and shorter (about 10 min)
#   bench/bench.sh --smoke               # tiny sizes, seconds per part; records nothing (CI)
#   bench/bench.sh --part proxy --part fanout    # only these parts (repeatable)
#   options: --bin-dir DIR (default target/release), --no-build
#
# Parts (each also runnable alone, see bench/README.md):
#   proxy        bench/proxy.sh: berth-proxy vs nginx, HAProxy and Traefik; req/s, p50/p99,
#                req/s per proxy core, ratios; 1, 1,000 and 10,000 routes, middlewares; 1 and 2 workers
#   pinned       bench/proxy.sh --pin --workers 1: the same with each proxy on a core of its own and
#                the client, backends and Consul on the other(s), so where the scheduler places the
#                backends it wakes no longer decides a one-worker round
#   propagation  berth-bench-propagation: Consul change -> every proxy routes (refuses), with
#                Traefik's Consul Catalog provider beside it; `docker run` through berth-agent ->
#                every proxy routes (when a Docker Engine answers; not in --smoke); p50/p99
#   fanout       berth-bench-fanout: 1,000 subscribed proxies; change -> every one ACKed, p50/p99;
#                control-plane memory per connected proxy; bytes and CPU per change
#   scale        berth-bench-consul-scale (10,000 services x 5 instances: first full snapshot, CPU
#                and Consul requests per change: a rule change, then an instance added or removed)
#                and berth-bench-fanout on the same catalog (bytes on the wire per change)
#   memory       berth-proxy RSS idle and with 10,000 routes, berth-control RSS with them
#   instructions bench/proxy.sh --instructions: instructions per request in user space (valgrind's
#                callgrind), repeatable on a shared machine: berth-proxy and nginx on one route,
#                with middlewares, and with a browser's request header fields; the ceiling probes on
#                one route
#   syscalls     bench/proxy.sh --syscalls: system calls per request (perf's syscall tracepoints),
#                berth-proxy, nginx and HAProxy on one route, with middlewares, over HTTP/2: the
#                kernel's share of a proxy's CPU is most of it on loopback, and the number of calls
#                per request is the part of it a proxy decides (skipped, saying so, where perf
#                cannot read the tracepoints: it needs root)
#   ceiling      bench/proxy.sh on one route: berth-proxy and nginx beside berth-bench-ceiling, a bare
#                forwarder built five ways (hyper's server and client, or code of its own on either
#                side): how little CPU per request a forwarder on tokio can need here
#
# Each part writes bench/results/<time>-<part>.txt headed by the machine and the exact command
# (not in --smoke). bench/RESULTS.md summarizes the runs against the issue's targets.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

mode=full parts=() bin_dir="$root/target/release" build=1
cmdline="bench/bench.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --full|--quick|--smoke) mode=${1#--}; shift ;;
    --part) parts+=("$2"); shift 2 ;;
    --bin-dir) bin_dir=$(cd "$2" && pwd); shift 2 ;;
    --no-build) build=; shift ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "bench/bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#parts[@]} -gt 0 ] || parts=(proxy pinned propagation fanout scale memory instructions syscalls ceiling)
for part in "${parts[@]}"; do
  case "$part" in proxy|pinned|propagation|fanout|scale|memory|instructions|syscalls|ceiling) ;; *) echo "bench/bench.sh: unknown part $part" >&2; exit 2 ;; esac
done

if [ -n "$build" ]; then
  bash scripts/setup.sh consul >&2
  bash scripts/setup.sh load >&2
  cargo build --release --locked -p berth-proxy -p berth-control -p berth-bench >&2
fi

stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
header() { # part command
  echo "# Berth benchmark: $1 ($mode), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command: $cmdline  (this part: $2)"
  echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "binaries: $bin_dir"
  echo
}
# Runs one part's command, its output to stdout and (not in --smoke) to its result file.
record() { # part cmd...
  local part=$1; shift
  echo "== $part: $*" >&2
  if [ "$mode" = smoke ]; then
    "$@"
  else
    mkdir -p bench/results
    local file="bench/results/$stamp-$part.txt"
    { header "$part" "$*"; "$@"; } | tee "$file"
    echo "bench: written to $file" >&2
  fi
}

pick() { # full quick smoke
  case "$mode" in full) echo "$1" ;; quick) echo "$2" ;; smoke) echo "$3" ;; esac
}

for part in "${parts[@]}"; do
  case "$part" in
    proxy)
      record proxy bench/proxy.sh "--$mode" --bin-dir "$bin_dir" --no-build --out - ;;
    pinned)
      smaller=() # the smoke run: one scenario, two targets
      [ "$mode" != smoke ] || smaller=(--scenarios 1 --targets "berth-proxy nginx")
      record pinned bench/proxy.sh "--$mode" --pin --workers 1 "${smaller[@]}" --bin-dir "$bin_dir" --no-build --out - ;;
    propagation)
      record propagation "$bin_dir/berth-bench-propagation" --proxies "$(pick 3 3 2)" --rounds "$(pick 200 100 3)" \
        $([ "$mode" = smoke ] || echo --docker "$(pick 100 30 0)") ;;
    fanout)
      record fanout "$bin_dir/berth-bench-fanout" --proxies "$(pick 1000 1000 10)" --services "$(pick 1000 200 10)" \
        --changes "$(pick 100 20 2)" ;;
    scale)
      record scale-consul "$bin_dir/berth-bench-consul-scale" --services "$(pick 10000 10000 50)" \
        --instances "$(pick 5 1 1)" --changes "$(pick 20 10 2)"
      record scale-instance "$bin_dir/berth-bench-consul-scale" --services "$(pick 10000 10000 50)" \
        --instances "$(pick 5 1 1)" --changes "$(pick 20 10 2)" --change instance
      record scale-wire "$bin_dir/berth-bench-fanout" --proxies "$(pick 10 10 2)" --services "$(pick 10000 10000 50)" \
        --instances "$(pick 5 1 1)" --changes "$(pick 20 10 2)" ;;
    memory)
      record memory bench/proxy.sh --targets berth-proxy --scenarios "$(pick "1 10000" "1 10000" "1 20")" \
        --workers "$(pick "1 2" 2 1)" --rounds 1 --duration "$(pick 4 2 1)" --bin-dir "$bin_dir" --no-build --out - ;;
    instructions)
      record instructions bench/proxy.sh --scenarios "1 mw browser" --workers 1 --instructions "$(pick 20000 5000 200)" \
        --targets "berth-proxy nginx ceiling-raw-raw ceiling-hyper-hyper" --bin-dir "$bin_dir" --no-build --out - ;;
    syscalls)
      if perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then
        record syscalls bench/proxy.sh --scenarios "$(pick "1 mw h2" "1 h2" 1)" --workers "$(pick "1 2" 1 1)" \
          --syscalls "$(pick 20000 5000 200)" --targets "$(pick "berth-proxy nginx haproxy" "berth-proxy nginx haproxy" "berth-proxy nginx")" \
          --bin-dir "$bin_dir" --no-build --out -
      else
        echo "syscalls: skipped: perf cannot read the syscall tracepoints here (install linux-perf; run as root)"
      fi ;;
    ceiling)
      record ceiling bench/proxy.sh --scenarios 1 --workers "$(pick "1 2" "1 2" 1)" --rounds "$(pick 3 3 1)" \
        --duration "$(pick 8 4 1)" --targets "berth-proxy nginx ceiling-raw-raw ceiling-hyper-hyper ceiling-hyper-conn ceiling-hyper-raw ceiling-raw-hyper" \
        --bin-dir "$bin_dir" --no-build --out - ;;
  esac
done
echo "bench: done ($mode: ${parts[*]})" >&2
