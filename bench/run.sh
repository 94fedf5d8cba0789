#!/usr/bin/env bash
# Berth's benchmarks, on this machine, all traffic on 127.0.0.1, every load bounded in time.
#
#   bench/run.sh [--duration 8] [--rounds 3]
#
# 1. Throughput and latency through a proxy, side by side in one run: wrk against one demo
#    backend directly, and against three backends through berth-proxy, nginx and haproxy (each
#    with keep-alive to the backends). Rounds are interleaved so machine noise hits every target
#    alike; the report gives the median of the rounds.
# 2. Change propagation: time from a Consul registration (deregistration) to the proxy routing
#    (refusing) the new host, measured by berth-bench-propagation.
# 3. Resident memory of berth-proxy and berth-control after the load.
# Results go to stdout and to bench/results/<date>.txt.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
duration=8
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "bench/run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh consul >&2
bash scripts/setup.sh load >&2
consul=$(command -v consul || echo "$root/.tools/consul/usr/bin/consul")
cargo build --release --locked -p berth-proxy -p berth-control -p berth-demo -p berth-bench >&2
bin="$root/target/release"

work=$(mktemp -d /tmp/berth-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { # url [host]
  local deadline=$((SECONDS + 30))
  until curl -fs -o /dev/null -H "Host: ${2:-localhost}" "$1"; do
    [ $SECONDS -lt $deadline ] || { echo "bench: $1 did not answer" >&2; exit 1; }
    sleep 0.1
  done
}
start() { # name cmd...
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}

c_http=$(free_port)
start consul "$consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -data-dir "$work/consul" -log-level warn \
  -hcl "ports { http = $c_http, dns = -1, grpc = -1, serf_lan = $(free_port), serf_wan = $(free_port), server = $(free_port) }"
wait_http "http://127.0.0.1:$c_http/v1/status/leader"

backends=()
for i in 1 2 3; do
  port=$(free_port)
  start "demo$i" "$bin/berth-demo" --listen "127.0.0.1:$port" --name "go-$i" --service web_go
  backends+=("$port")
  wait_http "http://127.0.0.1:$port/health"
  curl -fs -X PUT "http://127.0.0.1:$c_http/v1/agent/service/register" -d "{\"ID\":\"go-$i\",\"Name\":\"web_go\",\"Address\":\"127.0.0.1\",\"Port\":$port,\"Tags\":[\"traefik.enable=true\",\"traefik.frontend.entryPoints=http\",\"traefik.frontend.rule=Host:go.traefix.example.localhost\"]}"
done

grpc=$(free_port); cp_admin=$(free_port); px_http=$(free_port); px_admin=$(free_port)
start control "$bin/berth-control" --consul-addr "http://127.0.0.1:$c_http" --grpc-addr "127.0.0.1:$grpc" --admin-addr "127.0.0.1:$cp_admin"
cp_pid=${pids[-1]}
RUST_LOG=warn start proxy "$bin/berth-proxy" --control-plane "http://127.0.0.1:$grpc" --entrypoint "http=127.0.0.1:$px_http" --admin-addr "127.0.0.1:$px_admin" --node-id bench
px_pid=${pids[-1]}
host=go.traefix.example.localhost
deadline=$((SECONDS + 30))
until [ "$(curl -s "http://127.0.0.1:$px_admin/api/snapshot" | grep -o '127.0.0.1:' | wc -l)" -ge 3 ]; do
  [ $SECONDS -lt $deadline ] || { echo "bench: proxy never got the three endpoints" >&2; exit 1; }
  sleep 0.1
done

ng_port=$(free_port); ha_port=$(free_port)
mkdir -p "$work/nginx"
{
  echo "worker_processes 2; daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log warn;"
  echo "events { worker_connections 1024; }"
  echo "http { access_log off; upstream web_go { keepalive 64;"
  for p in "${backends[@]}"; do echo "server 127.0.0.1:$p;"; done
  echo "} server { listen 127.0.0.1:$ng_port; location / { proxy_pass http://web_go; proxy_http_version 1.1;"
  echo "proxy_set_header Connection \"\"; proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr; } } }"
} >"$work/nginx/nginx.conf"
start nginx nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"
{
  echo "global"; echo "  nbthread 2"; echo "  maxconn 4096"
  echo "defaults"; echo "  mode http"; echo "  timeout connect 2s"; echo "  timeout client 30s"; echo "  timeout server 30s"
  echo "  option http-keep-alive"; echo "  option forwardfor"
  echo "frontend fe"; echo "  bind 127.0.0.1:$ha_port"; echo "  default_backend web_go"
  echo "backend web_go"; echo "  balance roundrobin"; echo "  http-reuse always"
  i=0; for p in "${backends[@]}"; do i=$((i+1)); echo "  server go$i 127.0.0.1:$p"; done
} >"$work/haproxy.cfg"
start haproxy haproxy -f "$work/haproxy.cfg"
wait_http "http://127.0.0.1:$ng_port/" "$host"
wait_http "http://127.0.0.1:$ha_port/" "$host"

declare -A target=(
  [direct]="http://127.0.0.1:${backends[0]}/"
  [berth-proxy]="http://127.0.0.1:$px_http/"
  [nginx]="http://127.0.0.1:$ng_port/"
  [haproxy]="http://127.0.0.1:$ha_port/"
)
order=(direct berth-proxy nginx haproxy)
declare -A rps p50 p99
for round in $(seq "$rounds"); do
  for name in "${order[@]}"; do
    out=$(wrk -t1 -c32 -d"${duration}s" --latency -H "Host: $host" "${target[$name]}")
    r=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    l50=$(awk '$1=="50%" {print $2}' <<<"$out")
    l99=$(awk '$1=="99%" {print $2}' <<<"$out")
    errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
    [ -z "$errs" ] || echo "bench: $name round $round: $errs" >&2
    rps[$name]+="$r "; p50[$name]+="$l50 "; p99[$name]+="$l99 "
    echo "round $round $name: $r req/s p50 $l50 p99 $l99" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f ", v}'; }

mkdir -p bench/results
report="bench/results/$(date -u +%Y-%m-%dT%H%M%SZ).txt"
{
  echo "# Berth benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command: bench/run.sh --duration $duration --rounds $rounds"
  echo "machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "load: wrk -t1 -c32 -d${duration}s, Host: $host; 3 berth-demo backends (release build); rounds interleaved"
  echo
  printf '%-12s %12s %10s %10s %14s\n' target "req/s(med)" "p50 ms" "p99 ms" "vs direct"
  base=$(median <<<"${rps[direct]}")
  for name in "${order[@]}"; do
    m=$(median <<<"${rps[$name]}")
    printf '%-12s %12s %10s %10s %14s\n' "$name" "$m" "$(to_ms <<<"${p50[$name]}" | median)" "$(to_ms <<<"${p99[$name]}" | median)" \
      "$(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.2fx", a/b}')"
  done
  echo
  echo "per-round req/s:"
  for name in "${order[@]}"; do echo "  $name: ${rps[$name]}"; done
  echo
  echo "memory after load (VmRSS): berth-proxy $(awk '/VmRSS/ {print $2" "$3}' /proc/$px_pid/status), berth-control $(awk '/VmRSS/ {print $2" "$3}' /proc/$cp_pid/status)"
  echo
  echo "change propagation (Consul HTTP call included; proxy polled every 1ms):"
  "$bin/berth-bench-propagation" --consul "http://127.0.0.1:$c_http" --proxy "127.0.0.1:$px_http" --backend-port "${backends[0]}" --rounds 30
} | tee "$report"
echo "bench: written to $report" >&2
