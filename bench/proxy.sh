#!/usr/bin/env bash
# Proxy throughput and latency, side by side in one run: berth-proxy (routes from a real
# berth-control reading a Consul dev agent), nginx (proxy_pass, upstream keepalive), HAProxy
# (http-reuse always) and Traefik (file provider, GOMAXPROCS = workers), each with 1 worker and then
# 2, over the same three 1-worker nginx backends answering a static 200, with the same Host-routed
# round robin and the same client (wrk -t1). All traffic on 127.0.0.1, every load bounded in time.
#
#   bench/proxy.sh [--full|--quick|--smoke] [--duration S] [--rounds N] [--connections C]
#                  [--scenarios "1 1000 10000 mw browser h2 tls h2tls"] [--workers "1 2"]
#                  [--targets "berth-proxy nginx haproxy traefik ceiling-raw-raw ..."] [--bin-dir DIR]
#                  [--no-build] [--instructions N [--keep-callgrind DIR]] [--syscalls N]
#                  [--pin] [--out FILE]
#
# Scenarios: `1` = one route; `1000`, `10000` = that many Host routes, each request to a random one
# (a wrk Lua script, the same for every target); `mw` = one route with strip prefix + a request
# and a response header; `browser` = one route, each request with the 13 header fields a browser
# sends with a page (accept*, sec-*, user-agent, a cookie, ...) where the others send only Host;
# `h2` = one route over HTTP/2 without TLS (prior knowledge), the client
# h2load (-c64 -m1, per-request latencies from its log); `tls` = one route over HTTPS (HTTP/1.1,
# wrk), `h2tls` = one route over HTTP/2 over TLS (ALPN h2, h2load): every target terminates TLS
# with the same self-signed ECDSA P-256 certificate for bench.example (openssl, made per run),
# connections kept alive, so this measures TLS records rather than handshakes. For each scenario and worker count,
# rounds are interleaved (A B C D, A B C D, ...) and the medians reported: requests/s, p50/p99
# latency, requests/s per core the proxy used (utime+stime of the proxy's processes from /proc
# over the run), the same per core of user time alone (utime: the proxy's own code, where the
# kernel's work for its sockets, most of a proxy's CPU on loopback and the noisiest part on a shared
# machine, is left out) and the system time per request, how often the proxy's threads were
# preempted per 1,000 requests and what share of their ready time they waited for a CPU (from
# /proc/<pid>/task/*/schedstat and status: on two shared cores this is where a proxy that uses less
# CPU per request can still serve fewer requests per second), and berth-proxy's ratios to each peer,
# of the medians and as the median of each round's own ratio (`*_paired`, steadier when the whole
# machine speeds up or slows down between rounds).
# Also berth-proxy's and berth-control's RSS per scenario.
#
# --pin: a worker count below the machine's cores runs the proxy on cores of its own (the last N,
# by taskset) and the client, the backends, Consul and berth-control on the others. Without it
# everything shares every core, and a backend the proxy's write wakes is often placed on the
# proxy's core and preempts it there; where the scheduler happens to place the backends moves a
# one-worker round by 10-20% for any proxy on two cores. Pinned, the proxy is what the figures
# measure. A worker count that needs every core runs shared, saying so. Every result line says
# which (`placement=pinned` or `shared`) and the cores the kernel let the proxy's process use
# (`proxy_cpus=`, from /proc/<pid>/status).
#
# Result lines (`result ...`, `ratio ...`, `memory ...`) go to stdout and, unless --out -, to
# bench/results/<time>-proxy.txt. --smoke: tiny sizes, one round of 1 s, records nothing.
#
# --instructions N: instead of the timed load, counts the instructions each target executes per
# request in user space, which stays the same from run to run on a shared, noisy machine: each
# target runs under valgrind's callgrind, gets N/10 requests (100 to 2,000) to warm up, then N
# requests (h2load --h1 -c8, or h2load over HTTP/2 for the h2 scenarios) between a reset and a
# dump of callgrind's counters (`instructions ...` lines). For berth-proxy, nginx (master_process off) and
# the ceiling probes; not over TLS. --keep-callgrind DIR keeps each dump there
# (<target>-<scenario>-<workers>.callgrind) for callgrind_annotate.
#
# --syscalls N: the same warm-up and N requests, without valgrind, counting the system calls each
# target makes per request (perf's syscall tracepoints on the target's processes, every thread):
# on loopback most of a proxy's CPU is the kernel's, and how many calls a request takes is the
# part of it a proxy decides (`syscalls ...` lines: all calls, then the ones that move bytes or
# wait). Needs perf with tracepoint access (as root). For berth-proxy, nginx, HAProxy and the
# ceiling probes; Traefik too.
#
# Ceiling targets (one-route HTTP/1.1 scenario `1` only, left out of the others):
# `ceiling-<server>-<client>` (server `raw` or `hyper`; client `raw`, `hyper` or `conn`) runs
# berth-bench-ceiling, a bare forwarder with no routing or middlewares (bench/src/bin/ceiling.rs):
# how little CPU a forwarder on tokio needs per request, with hyper's server and client or with
# its own code on either side. Their ratios to nginx are reported too.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

duration=8 rounds=3 conns=64 scenarios="1 1000 10000 mw browser h2 tls h2tls" workers="1 2"
targets="berth-proxy nginx haproxy traefik" bin_dir="$root/target/release" build=1 out= mode=full instructions= keep_callgrind= syscalls= pin=
cmdline="bench/proxy.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --full) mode=full; shift ;;
    --quick) mode=quick; duration=4; rounds=3; scenarios="1 10000"; shift ;;
    --smoke) mode=smoke; duration=1; rounds=1; scenarios="1 20 mw browser h2 tls h2tls"; workers="1"; out=-; shift ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --no-build) build=; shift ;;
    --instructions) instructions=$2; shift 2 ;;
    --keep-callgrind) keep_callgrind=$2; shift 2 ;;
    --syscalls) syscalls=$2; shift 2 ;;
    --pin) pin=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "bench/proxy.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

for t in $targets; do
  case "$t" in
    berth-proxy|nginx|haproxy|traefik) ;;
    ceiling-raw-raw|ceiling-raw-hyper|ceiling-raw-conn|ceiling-hyper-raw|ceiling-hyper-hyper|ceiling-hyper-conn) ;;
    *) echo "bench/proxy.sh: unknown target $t (berth-proxy, nginx, haproxy, traefik, ceiling-<raw|hyper>-<raw|hyper|conn>)" >&2; exit 2 ;;
  esac
done
for tool in wrk h2load nginx haproxy python3 curl openssl $([ -z "$pin" ] || echo taskset); do
  command -v "$tool" >/dev/null || { echo "bench/proxy.sh: $tool is missing: run scripts/setup.sh load" >&2; exit 1; }
done
if [ -n "$instructions" ]; then
  [[ "$instructions" =~ ^[1-9][0-9]*$ ]] || { echo "bench/proxy.sh: --instructions takes a request count, not $instructions" >&2; exit 2; }
  for tool in valgrind callgrind_control; do
    command -v "$tool" >/dev/null || { echo "bench/proxy.sh: --instructions needs $tool (Debian's valgrind)" >&2; exit 1; }
  done
  for t in $targets; do
    case "$t" in berth-proxy|nginx|ceiling-*) ;; *) echo "bench/proxy.sh: --instructions counts berth-proxy, nginx and ceiling-* only, not $t" >&2; exit 2 ;; esac
  done
  for s in $scenarios; do
    case "$s" in tls|h2tls) echo "bench/proxy.sh: --instructions does not take the TLS scenarios" >&2; exit 2 ;; esac
  done
fi
if [ -n "$syscalls" ]; then
  [[ "$syscalls" =~ ^[1-9][0-9]*$ ]] || { echo "bench/proxy.sh: --syscalls takes a request count, not $syscalls" >&2; exit 2; }
  [ -z "$instructions" ] || { echo "bench/proxy.sh: --syscalls and --instructions are separate runs" >&2; exit 2; }
  command -v perf >/dev/null || { echo "bench/proxy.sh: --syscalls needs perf (Debian's linux-perf)" >&2; exit 1; }
  perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 \
    || { echo "bench/proxy.sh: --syscalls: perf cannot read the syscall tracepoints here (run as root)" >&2; exit 1; }
  for s in $scenarios; do
    case "$s" in tls|h2tls) echo "bench/proxy.sh: --syscalls does not take the TLS scenarios" >&2; exit 2 ;; esac
  done
fi
consul=$(command -v consul || echo "$root/.tools/consul/usr/bin/consul")
[ -x "$consul" ] || { echo "bench/proxy.sh: consul is missing: run scripts/setup.sh consul" >&2; exit 1; }
traefik="$root/.tools/traefik/traefik"
if [[ " $targets " == *" traefik "* ]] && [ ! -x "$traefik" ]; then
  echo "bench/proxy.sh: $traefik is missing (scripts/setup.sh traefik): Traefik left out" >&2
  targets=${targets//traefik/}
fi
if [ -n "$build" ]; then
  cargo build --release --locked -p berth-proxy -p berth-control >&2
  if [[ " $targets " == *" ceiling-"* ]]; then cargo build --release --locked -p berth-bench --bin berth-bench-ceiling >&2; fi
fi

work=$(mktemp -d /tmp/berth-bench-proxy.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A port on 127.0.0.1 free for both TCP and UDP (Consul's Serf ports take both) that this run has
# not handed out before: the OS may offer a port again as soon as its probe socket closes, and
# Consul's four ports are picked back to back. $(...) runs in a subshell, so the ports given are
# kept in a file.
free_port() {
  python3 - "$work/ports-given" <<'EOF'
import socket, sys
given_path = sys.argv[1]
try:
    given = set(open(given_path).read().split())
except FileNotFoundError:
    given = set()
while True:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        udp.close()
        tcp.close()
    if str(port) not in given:
        break
with open(given_path, "a") as f:
    f.write(f"{port}\n")
print(port)
EOF
}
wait_http() { # url host [status] [log name: shown if the wait fails]
  local deadline=$((SECONDS + 30)) code
  while :; do
    code=$(curl -s ${curl_h2:-} -o /dev/null -w '%{http_code}' -H "Host: $2" "$1" || true)
    [ "$code" = "${3:-200}" ] && return 0
    if [ $SECONDS -ge $deadline ]; then
      echo "bench: $1 (Host $2) answered $code, not ${3:-200}, within 30 s" >&2
      [ -z "${4:-}" ] || { echo "bench: the end of $work/$4.log:" >&2; tail -n 30 "$work/$4.log" >&2 || true; }
      return 1
    fi
    sleep 0.1
  done
}
start() { # name cmd... ; sets $last
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  last=$!
  pids+=("$last")
}
stop() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
# A process and its direct children (nginx's workers), one pid a line.
procs_of() { echo "$1"; pgrep -P "$1" || true; }
# utime and stime (clock ticks, "user system") of a process and its direct children.
ticks() {
  local user=0 sys=0 p u s
  for p in $(procs_of "$1"); do
    [ -r "/proc/$p/stat" ] || continue
    read -r u s < <(awk '{sub(/^.*\) /, ""); print $12, $13}' "/proc/$p/stat")
    user=$((user + u)) sys=$((sys + s))
  done
  echo "$user $sys"
}
# Scheduling of a process's threads and its direct children's: "run_ns wait_ns preempted", the
# time on a CPU and the time ready to run but waiting for one (schedstat), and the involuntary
# context switches (the threads were preempted). "nan nan nan" where the kernel keeps no schedstat.
sched() {
  local files=() p
  for p in $(procs_of "$1"); do files+=(/proc/"$p"/task/*/schedstat /proc/"$p"/task/*/status); done
  # A thread that ended meanwhile is left out (cat goes on past a file that is gone).
  cat "${files[@]}" 2>/dev/null | awk '/^nonvoluntary_ctxt_switches:/ {pre += $2; next}
      NF == 3 && $1 ~ /^[0-9]+$/ {run += $1; wait += $2; seen = 1}
      END {if (seen) printf "%.0f %.0f %.0f\n", run, wait, pre; else print "nan nan nan"}'
}
# The cores the kernel lets a process run on (its affinity), e.g. "1" or "0-1".
cpus_of() { awk '/^Cpus_allowed_list:/ {print $2}' "/proc/$1/status"; }
# Where worker count $1 runs (--pin): sets $placement, and $pin_proxy and $pin_load (taskset
# prefixes for the proxy and for the client, empty when shared), and moves the backends, Consul
# and berth-control (every thread, and nginx's workers) to the client's cores.
place() { # workers
  local n cpus p q
  n=$(nproc)
  pin_proxy=() pin_load=() placement=shared cpus="0-$((n - 1))"
  [ -n "$pin" ] || return 0
  if [ "$1" -lt "$n" ]; then
    cpus="0-$((n - $1 - 1))" placement=pinned
    pin_proxy=(taskset -c "$((n - $1))-$((n - 1))") pin_load=(taskset -c "$cpus")
  else
    echo "bench: --pin: $1 workers need all $n cores, so this worker count runs shared" >&2
  fi
  for p in "${backend_pids[@]}" "$consul_pid" "$cp_pid"; do
    for q in $(procs_of "$p"); do
      taskset -a -cp "$cpus" "$q" >/dev/null || echo "bench: --pin: could not move process $q to cores $cpus" >&2
    done
  done
}
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# Three 1-worker nginx backends answering a static 200.
backends=() backend_pids=()
for i in 1 2 3; do
  port=$(free_port)
  mkdir -p "$work/backend$i"
  cat >"$work/backend$i/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $work/backend$i/nginx.pid; error_log $work/backend$i/error.log error;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 120s;
  server { listen 127.0.0.1:$port; location / { default_type text/plain; return 200 "ok from backend $i\n"; } } }
EOF
  start "backend$i" nginx -c "$work/backend$i/nginx.conf" -p "$work/backend$i"
  backends+=("$port") backend_pids+=("$last")
done
for i in 1 2 3; do wait_http "http://127.0.0.1:${backends[$((i - 1))]}/" any 200 "backend$i"; done

# The TLS scenarios' certificate: bench.crt + bench.key, and bench.pem holding both (berth-proxy's
# --cert-dir and HAProxy's crt take that form).
certs="$work/certs"
mkdir -p "$certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=bench.example" \
  -addext "subjectAltName=DNS:bench.example" -keyout "$certs/bench.key" -out "$certs/bench.crt" 2>/dev/null
cat "$certs/bench.crt" "$certs/bench.key" >"$certs/bench.pem"
mkdir -p "$certs/berth" && cp "$certs/bench.pem" "$certs/berth/bench.pem"
is_tls() { [ "$1" = tls ] || [ "$1" = h2tls ]; }

# The scenario's routes: hosts and the path requested.
hosts_of() { # scenario -> count of Host routes (0 for the single-route scenarios)
  case "$1" in 1|mw|browser|h2|tls|h2tls) echo 0 ;; *) echo "$1" ;; esac
}

# The `browser` scenario's request header fields, besides Host (as a browser sends them with a
# page: Chromium 131 on Linux), for wrk and h2load alike.
browser_headers=(
  -H 'accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8'
  -H 'accept-encoding: gzip, deflate, br, zstd'
  -H 'accept-language: en-US,en;q=0.9'
  -H 'cache-control: max-age=0'
  -H 'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"'
  -H 'sec-ch-ua-mobile: ?0'
  -H 'sec-ch-ua-platform: "Linux"'
  -H 'sec-fetch-dest: document'
  -H 'sec-fetch-mode: navigate'
  -H 'sec-fetch-site: none'
  -H 'upgrade-insecure-requests: 1'
  -H 'user-agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'
  -H 'cookie: session=4f2d8c1a9b7e6d5c3a1f0e9d8c7b6a59; theme=dark; consent=1'
)

# Writes the scenario's catalog into Consul: one service per route, three instances each.
register() { # consul_http scenario
  python3 - "$1" "$2" "${backends[@]}" <<'EOF'
import json, sys, urllib.request
base, scenario, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
def txn(ops):
    for i in range(0, len(ops), 64):
        req = urllib.request.Request(base + "/v1/txn", data=json.dumps(ops[i:i+64]).encode(), method="PUT")
        urllib.request.urlopen(req, timeout=30).read()
def v1(host):
    return ["traefik.enable=true", "traefik.frontend.entryPoints=http", "traefik.frontend.rule=Host:" + host]
services = []
if scenario in ("1", "browser", "h2", "tls", "h2tls"):
    services.append(("web", v1("bench.example")))
elif scenario == "mw":
    services.append(("mw", ["traefik.enable=true",
        "traefik.http.routers.mw.rule=Host(`bench.example`) && PathPrefix(`/api`)",
        "traefik.http.routers.mw.entrypoints=http",
        "traefik.http.routers.mw.middlewares=mw-strip,mw-hdr",
        "traefik.http.middlewares.mw-strip.stripprefix.prefixes=/api",
        "traefik.http.middlewares.mw-hdr.headers.customrequestheaders.X-Bench=1",
        "traefik.http.middlewares.mw-hdr.headers.customresponseheaders.X-Served=bench"]))
else:
    services += [("svc-%d" % i, v1("svc-%d.example" % i)) for i in range(int(scenario))]
txn([{"Node": {"Verb": "set", "Node": {"Node": "bench-%d" % n, "Address": "127.0.0.1"}}} for n in range(3)])
ops = []
for name, tags in services:
    for n, port in enumerate(ports):
        ops.append({"Service": {"Verb": "set", "Node": "bench-%d" % n, "Service": {
            "ID": "%s-%d" % (name, n), "Service": name, "Address": "127.0.0.1", "Port": port, "Tags": tags}}})
txn(ops)
EOF
}

# Peers' configurations for a scenario and a worker count.
nginx_conf() { # dir port scenario workers
  local n; n=$(hosts_of "$3")
  {
    echo "worker_processes $4; daemon off; pid $1/nginx.pid; error_log $1/error.log error;"
    # Under callgrind the worker is the process started (one worker, whatever $4 says).
    [ -z "$instructions" ] || echo "master_process off;"
    echo "events { worker_connections 4096; }"
    echo "http { access_log off; keepalive_requests 10000000; server_names_hash_max_size 65536; server_names_hash_bucket_size 128;"
    echo "upstream web { keepalive 64; keepalive_requests 10000000;"
    for p in "${backends[@]}"; do echo "  server 127.0.0.1:$p;"; done
    echo "}"
    local h2= tls=
    case "$3" in
      h2) h2=" http2" ;;
      tls) h2=" ssl"; tls="ssl_certificate $certs/bench.crt; ssl_certificate_key $certs/bench.key;" ;;
      h2tls) h2=" ssl http2"; tls="ssl_certificate $certs/bench.crt; ssl_certificate_key $certs/bench.key;" ;;
    esac
    echo "server { listen 127.0.0.1:$2$h2 default_server; $tls return 404; }"
    local px='proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr;'
    case "$3" in
      1|browser|h2|tls|h2tls) echo "server { listen 127.0.0.1:$2$h2; server_name bench.example; $tls location / { proxy_pass http://web; $px } }" ;;
      mw) echo "server { listen 127.0.0.1:$2; server_name bench.example; location /api/ { proxy_pass http://web/; $px proxy_set_header X-Bench 1; add_header X-Served bench; } }" ;;
      *) for ((i = 0; i < n; i++)); do
           echo "server { listen 127.0.0.1:$2; server_name svc-$i.example; location / { proxy_pass http://web; $px } }"
         done ;;
    esac
    echo "}"
  } >"$1/nginx.conf"
}
haproxy_conf() { # dir port scenario workers
  local n; n=$(hosts_of "$3")
  {
    echo "global"; echo "  nbthread $4"; echo "  maxconn 8192"
    echo "defaults"; echo "  mode http"; echo "  timeout connect 2s"; echo "  timeout client 30s"; echo "  timeout server 30s"
    echo "  option http-keep-alive"; echo "  option forwardfor"
    local bind=
    case "$3" in
      h2) bind=" proto h2" ;;
      tls) bind=" ssl crt $certs/bench.pem alpn http/1.1" ;;
      h2tls) bind=" ssl crt $certs/bench.pem alpn h2,http/1.1" ;;
    esac
    echo "frontend fe"; echo "  bind 127.0.0.1:$2$bind"
    case "$3" in
      1|browser|h2|tls|h2tls) echo "  use_backend web if { hdr(host) -i bench.example }" ;;
      mw) echo "  use_backend web if { hdr(host) -i bench.example } { path_beg /api }" ;;
      *) for ((i = 0; i < n; i++)); do echo "svc-$i.example"; done >"$1/hosts.lst"
         echo "  use_backend web if { hdr(host),lower -f $1/hosts.lst }" ;;
    esac
    echo "  default_backend notfound"
    echo "backend notfound"; echo "  http-request return status 404"
    echo "backend web"; echo "  balance roundrobin"; echo "  http-reuse always"
    if [ "$3" = mw ]; then
      echo "  http-request set-header X-Bench 1"; echo "  http-request set-path %[path,regsub(^/api,)]"
      echo "  http-response set-header X-Served bench"
    fi
    i=0; for p in "${backends[@]}"; do i=$((i+1)); echo "  server b$i 127.0.0.1:$p"; done
  } >"$1/haproxy.cfg"
}
traefik_conf() { # dir scenario
  local n; n=$(hosts_of "$2")
  {
    echo "http:"
    echo "  services:"; echo "    web:"; echo "      loadBalancer:"; echo "        servers:"
    for p in "${backends[@]}"; do echo "          - url: \"http://127.0.0.1:$p\""; done
    echo "  middlewares:"
    echo "    strip: { stripPrefix: { prefixes: [\"/api\"] } }"
    echo "    hdr: { headers: { customRequestHeaders: { X-Bench: \"1\" }, customResponseHeaders: { X-Served: bench } } }"
    echo "  routers:"
    case "$2" in
      1|browser|h2) echo "    r: { rule: \"Host(\`bench.example\`)\", service: web, entryPoints: [web] }" ;;
      tls|h2tls) echo "    r: { rule: \"Host(\`bench.example\`)\", service: web, entryPoints: [web], tls: {} }" ;;
      mw) echo "    r: { rule: \"Host(\`bench.example\`) && PathPrefix(\`/api\`)\", service: web, entryPoints: [web], middlewares: [strip, hdr] }" ;;
      *) for ((i = 0; i < n; i++)); do echo "    r$i: { rule: \"Host(\`svc-$i.example\`)\", service: web, entryPoints: [web] }"; done ;;
    esac
    if is_tls "$2"; then
      echo "tls:"
      echo "  certificates: [ { certFile: \"$certs/bench.crt\", keyFile: \"$certs/bench.key\" } ]"
      echo "  stores: { default: { defaultCertificate: { certFile: \"$certs/bench.crt\", keyFile: \"$certs/bench.key\" } } }"
    fi
  } >"$1/dynamic.yml"
}

# wrk's Lua script spreading requests over the scenario's hosts.
cat >"$work/hosts.lua" <<'EOF'
local n = tonumber(os.getenv("BENCH_HOSTS"))
math.randomseed(42)
request = function()
  return wrk.format(nil, nil, { Host = "svc-" .. math.random(0, n - 1) .. ".example" })
end
EOF

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f", v}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a/b; else print "nan"}'; }
# The median of the rounds' own ratios: berth-proxy's round r against the peer's round r, which ran
# right after it. When the whole machine speeds up or slows down between rounds (other work on the
# host), both sides of a pair move together, so this is steadier than the ratio of the medians.
paired() { # "berth's rounds" "peer's rounds"
  paste -d' ' <(tr ' ' '\n' <<<"$1") <(tr ' ' '\n' <<<"$2") \
    | awk '$1 != "" && $2 > 0 && $1 != "nan" {printf "%.6f\n", $1 / $2}' | median \
    | awk '{if ($1 == "nan") printf "nan"; else printf "%.2f", $1}'
}

# Starts a Consul dev agent for scenario $1 on free ports and waits until it has elected itself
# leader; sets $c_http and $consul_pid. A port picked free can still be taken before Consul binds
# it (any process's outgoing connection or DNS query may get it), so an agent that exits while
# starting is started again on fresh ports, up to three times.
start_consul() {
  local attempt deadline
  for attempt in 1 2 3; do
    c_http=$(free_port)
    start consul "$consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -data-dir "$work/consul-$1-$attempt" \
      -log-level warn -hcl "ports { http = $c_http, dns = -1, grpc = -1, serf_lan = $(free_port), serf_wan = $(free_port), server = $(free_port) }"
    consul_pid=$last
    deadline=$((SECONDS + 30))
    # The leader endpoint answers "" until the agent has elected itself, and writes need a leader.
    until [[ "$(curl -s "http://127.0.0.1:$c_http/v1/status/leader" || true)" == '"'?*'"' ]]; do
      if ! kill -0 "$consul_pid" 2>/dev/null; then
        echo "bench: Consul (attempt $attempt) exited while starting; the end of its log:" >&2
        tail -n 10 "$work/consul.log" >&2 || true
        continue 2
      fi
      [ $SECONDS -lt $deadline ] || { echo "bench: Consul elected no leader within 30 s; the end of its log:" >&2; tail -n 30 "$work/consul.log" >&2 || true; exit 1; }
      sleep 0.1
    done
    return 0
  done
  echo "bench: Consul did not start in three attempts" >&2
  exit 1
}

lines=()
emit() { lines+=("$*"); echo "$*"; }

# The counted modes' load: $2 requests to target $1 by h2load (-c8; HTTP/1.1, HTTP/2 in scenario
# h2), run under the command that follows (a timeout, perf); h2load's output on stdout.
counted_load() { # target requests cmd...
  local t=$1 n=$2 h2=--h1
  shift 2
  [ "$scenario" = h2 ] && h2=
  "$@" "${pin_load[@]}" h2load $h2 -t1 -c8 -n"$n" -H ":authority: $probe_host" "${extra_headers[@]}" "${url[$t]}"
}
# Warms target $1 up before $2 counted requests: a tenth as many (100 to 2,000).
warm_up() { # target requests
  local warm=$(($2 / 10))
  [ "$warm" -ge 100 ] || warm=100
  [ "$warm" -le 2000 ] || warm=2000
  counted_load "$1" "$warm" timeout 300 >/dev/null
}
# Stops the run unless h2load's output $3 says target $1 answered all $2 requests with 2xx.
all_answered() { # target requests output
  local ok
  ok=$(awk '/^status codes:/ {print $3}' <<<"$3")
  [ "$ok" = "$2" ] || { echo "bench: $1 answered $ok of $2 requests with 2xx:" >&2; echo "$3" >&2; exit 1; }
}

# --instructions: for each target in $run_targets (started under callgrind), a warm-up, then the
# counters reset, $instructions requests, and the counters dumped; prints instructions per request.
count_instructions() {
  local t o dump ir
  declare -A per=()
  for t in $run_targets; do
    warm_up "$t" "$instructions"
    callgrind_control -z "${pid[$t]}" >/dev/null 2>&1
    o=$(counted_load "$t" "$instructions" timeout 600)
    callgrind_control -d "${pid[$t]}" >/dev/null 2>&1
    all_answered "$t" "$instructions" "$o"
    # The newest dump of that process: its totals are the instructions since the reset.
    dump=$(ls -t "$work/callgrind.${pid[$t]}"* | head -n 1)
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
    [ -z "$keep_callgrind" ] || { mkdir -p "$keep_callgrind"; cp "$dump" "$keep_callgrind/$t-$scenario-$w.callgrind"; }
    per[$t]=$((ir / instructions))
    emit "instructions scenario=$scenario workers=$w target=$t requests=$instructions per_request=${per[$t]}"
  done
  if [ -n "${per[berth-proxy]:-}" ]; then
    for t in $run_targets; do
      [ "$t" = berth-proxy ] && continue
      emit "ratio scenario=$scenario workers=$w berth-proxy/$t instructions=$(ratio "${per[berth-proxy]}" "${per[$t]}")"
    done
  fi
}

# --syscalls: for each target in $run_targets, a warm-up, then $syscalls requests with perf
# counting the system calls of the target's processes (all threads); prints calls per request.
syscall_events="raw_syscalls:sys_enter syscalls:sys_enter_read syscalls:sys_enter_recvfrom syscalls:sys_enter_readv
  syscalls:sys_enter_write syscalls:sys_enter_writev syscalls:sys_enter_sendto syscalls:sys_enter_sendmsg
  syscalls:sys_enter_epoll_wait syscalls:sys_enter_epoll_pwait syscalls:sys_enter_epoll_ctl syscalls:sys_enter_futex"
count_syscalls() {
  local t o procs line events
  events=$(echo $syscall_events | tr ' ' ,)
  for t in $run_targets; do
    warm_up "$t" "$syscalls"
    procs=$(procs_of "${pid[$t]}" | paste -sd,) # with nginx's workers
    o=$(counted_load "$t" "$syscalls" timeout 600 perf stat -x, -o "$work/perf-$t.csv" -e "$events" -p "$procs" --)
    all_answered "$t" "$syscalls" "$o"
    line="syscalls scenario=$scenario workers=$w target=$t requests=$syscalls"
    line+=$(awk -F, -v n="$syscalls" '$3 ~ /sys_enter/ && $1 ~ /^[0-9]+$/ && $1 > 0 {
        name = $3; sub(/^.*sys_enter_?/, "", name); if (name == "") name = "all"
        printf " %s=%.2f", name, $1 / n }' "$work/perf-$t.csv")
    emit "$line"
  done
}

for scenario in $scenarios; do
  n=$(hosts_of "$scenario")
  curl_h2= # the last scenario's client options are not for Consul and berth-control
  # A fresh Consul and berth-control per scenario: the table holds that scenario's routes only.
  start_consul "$scenario"
  register "http://127.0.0.1:$c_http" "$scenario"
  grpc=$(free_port); cp_admin=$(free_port)
  start "control-$scenario" "$bin_dir/berth-control" --consul-addr "http://127.0.0.1:$c_http" \
    --grpc-addr "127.0.0.1:$grpc" --admin-addr "127.0.0.1:$cp_admin"
  cp_pid=$last
  wait_http "http://127.0.0.1:$cp_admin/healthz" any 200 "control-$scenario"
  if [ "$n" -gt 0 ]; then path=/; probe_host="svc-$((n - 1)).example"; else probe_host=bench.example; fi
  [ "$scenario" = mw ] && path=/api/x || path=/
  extra_headers=()
  [ "$scenario" != browser ] || extra_headers=("${browser_headers[@]}")
  case "$scenario" in
    h2) curl_h2=--http2-prior-knowledge; scheme=http ;;
    tls) curl_h2="-k --http1.1"; scheme=https ;;
    h2tls) curl_h2="-k --http2"; scheme=https ;;
    *) curl_h2=; scheme=http ;;
  esac

  # The ceiling probes only forward body-less HTTP/1.1 requests over one route.
  run_targets= left_out=
  for t in $targets; do
    case "$t" in
      ceiling-*) if [ "$scenario" = 1 ]; then run_targets+=" $t"; else left_out+=" $t"; fi ;;
      *) run_targets+=" $t" ;;
    esac
  done
  [ -z "$left_out" ] || echo "bench: scenario $scenario leaves out the ceiling probes (one route only):$left_out" >&2

  wrap=() # --instructions: every target under callgrind, its counters dumped beside the logs
  [ -z "$instructions" ] || wrap=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" --trace-children=no)
  for w in $workers; do
    place "$w"
    declare -A url=() pid=()
    for t in $run_targets; do
      port=$(free_port)
      case "$t" in
        ceiling-*)
          IFS=- read -r _ half_server half_client <<<"$t"
          start "$t-$scenario-$w" "${pin_proxy[@]}" "${wrap[@]}" "$bin_dir/berth-bench-ceiling" --listen "127.0.0.1:$port" --workers "$w" \
            --server "$half_server" --client "$half_client" $(for b in "${backends[@]}"; do echo "--backend 127.0.0.1:$b"; done) ;;
        berth-proxy)
          RUST_LOG=warn start "berth-$scenario-$w" "${pin_proxy[@]}" "${wrap[@]}" "$bin_dir/berth-proxy" --control-plane "http://127.0.0.1:$grpc" \
            --entrypoint "http=127.0.0.1:$port" --admin-addr "127.0.0.1:$(free_port)" --node-id "bench-$w" --workers "$w" \
            $(is_tls "$scenario" && echo "--tls http --cert-dir $certs/berth") ;;
        nginx)
          d="$work/nginx-$scenario-$w"; mkdir -p "$d"; nginx_conf "$d" "$port" "$scenario" "$w"
          start "nginx-$scenario-$w" "${pin_proxy[@]}" "${wrap[@]}" nginx -c "$d/nginx.conf" -p "$d" ;;
        haproxy)
          d="$work/haproxy-$scenario-$w"; mkdir -p "$d"; haproxy_conf "$d" "$port" "$scenario" "$w"
          start "haproxy-$scenario-$w" "${pin_proxy[@]}" haproxy -f "$d/haproxy.cfg" ;;
        traefik)
          d="$work/traefik-$scenario-$w"; mkdir -p "$d"; traefik_conf "$d" "$scenario"
          GOMAXPROCS=$w start "traefik-$scenario-$w" "${pin_proxy[@]}" "$traefik" --entryPoints.web.address="127.0.0.1:$port" \
            --providers.file.filename="$d/dynamic.yml" --log.level=ERROR \
            --global.checkNewVersion=false --global.sendAnonymousUsage=false ;;
      esac
      pid[$t]=$last
      url[$t]="$scheme://127.0.0.1:$port$path"
    done
    for t in $run_targets; do
      wait_http "${url[$t]}" "$probe_host" || { echo "bench: $t does not route $probe_host; its log:" >&2; cat "$work/$t"*"-$scenario-$w.log" >&2 || true; exit 1; }
    done
    if [ "$scenario" = mw ]; then
      for t in $run_targets; do # the middlewares are in force: the response header is there
        curl -s -o /dev/null -D - -H "Host: bench.example" "${url[$t]}" | grep -i '^x-served: bench' >/dev/null \
          || { echo "bench: $t does not apply the headers middleware" >&2; exit 1; }
      done
    fi
    if [ "$scenario" = h2tls ]; then
      for t in $run_targets; do # HTTP/2 is what TLS negotiated
        v=$(curl -k --http2 -s -o /dev/null -w '%{http_version}' -H "Host: bench.example" "${url[$t]}" || true)
        [ "$v" = 2 ] || { echo "bench: $t does not negotiate HTTP/2 over TLS (got HTTP/$v)" >&2; exit 1; }
      done
    fi
    if [[ " $run_targets " == *" berth-proxy "* ]]; then
      # Idle: routes loaded, before any load.
      emit "memory scenario=$scenario workers=$w berth-proxy_rss_idle_mib=$(rss_mib "${pid[berth-proxy]}") berth-control_rss_mib=$(rss_mib "$cp_pid")"
    fi
    if [ -n "$instructions" ] || [ -n "$syscalls" ]; then
      if [ -n "$instructions" ]; then count_instructions; else count_syscalls; fi
      for t in $run_targets; do stop "${pid[$t]}"; done
      unset url pid
      continue
    fi
    declare -A rps=() p50=() p99=() pc=() puc=() sus=() pk=() rw=() bad=()
    for round in $(seq "$rounds"); do
      for t in $run_targets; do
        read -r before_user before_sys < <(ticks "${pid[$t]}")
        read -r before_run before_wait before_pre < <(sched "${pid[$t]}")
        if [ "$scenario" = h2 ] || [ "$scenario" = h2tls ]; then
          # HTTP/2 (without TLS by prior knowledge, or over TLS by ALPN), one stream per
          # connection at a time like wrk; per-request latencies from h2load's log.
          rm -f "$work/h2.log"
          o=$(timeout $((duration + 30)) "${pin_load[@]}" h2load -t1 -c"$conns" -m1 -D"$duration" --log-file="$work/h2.log" \
            -H ":authority: bench.example" "${url[$t]}")
          o+=$'\n'$(awk -F'\t' '{print $3}' "$work/h2.log" | sort -n | awk '{a[NR]=$1} END {
            printf "  50%% %.3fms\n  99%% %.3fms\n", a[int(NR*0.5)+1]/1000, a[int(NR*0.99)+1]/1000}')
          o+=$'\n'$(awk '/^finished in/ {sub(/,/, "", $3); printf "Requests/sec: %s\n", $4} /^requests:/ {printf "%s requests in\n", $6; done=$6}
            /^status codes:/ {if (done - $3 > 0) printf "Non-2xx or 3xx responses: %d\n", done - $3}' <<<"$o")
        elif [ "$n" -gt 0 ]; then
          o=$(BENCH_HOSTS=$n timeout $((duration + 30)) "${pin_load[@]}" wrk -t1 -c"$conns" -d"${duration}s" --latency -s "$work/hosts.lua" "${url[$t]}")
        else
          o=$(timeout $((duration + 30)) "${pin_load[@]}" wrk -t1 -c"$conns" -d"${duration}s" --latency -H "Host: bench.example" "${extra_headers[@]}" "${url[$t]}")
        fi
        read -r after_user after_sys < <(ticks "${pid[$t]}")
        read -r after_run after_wait after_pre < <(sched "${pid[$t]}")
        used_user=$((after_user - before_user)) used_sys=$((after_sys - before_sys))
        used=$((used_user + used_sys))
        reqs=$(awk '/requests in/ {print $1}' <<<"$o")
        r=$(awk '/Requests\/sec/ {print $2}' <<<"$o")
        rps[$t]+="$r "
        p50[$t]+="$(awk '$1=="50%" {print $2}' <<<"$o" | to_ms) "
        p99[$t]+="$(awk '$1=="99%" {print $2}' <<<"$o" | to_ms) "
        pc[$t]+="$(awk -v q="$reqs" -v u="$used" -v hz="$hz" 'BEGIN {if (u > 0) printf "%.0f", q / (u / hz); else print "nan"}') "
        puc[$t]+="$(awk -v q="$reqs" -v u="$used_user" -v hz="$hz" 'BEGIN {if (u > 0) printf "%.0f", q / (u / hz); else print "nan"}') "
        sus[$t]+="$(awk -v q="$reqs" -v s="$used_sys" -v hz="$hz" 'BEGIN {if (q > 0) printf "%.2f", s / hz / q * 1e6; else print "nan"}') "
        preempted=$(awk -v a="$before_pre" -v b="$after_pre" 'BEGIN {if (a == "nan" || b == "nan") print "nan"; else print b - a}')
        pk[$t]+="$(awk -v q="$reqs" -v n="$preempted" 'BEGIN {if (n == "nan" || q <= 0) print "nan"; else printf "%.1f", n / q * 1000}') "
        rw[$t]+="$(awk -v r0="$before_run" -v r1="$after_run" -v w0="$before_wait" -v w1="$after_wait" 'BEGIN {
          if (r0 == "nan" || r1 == "nan" || r1 - r0 + w1 - w0 <= 0) print "nan"; else printf "%.1f", (w1 - w0) / (r1 - r0 + w1 - w0) * 100}') "
        e=$(awk '/Non-2xx/ {print "non2xx:" $5} /Socket errors/ {gsub(/ /, ""); print $0}' <<<"$o" | tr '\n' ' ')
        bad[$t]+="${e:-0} "
        echo "round $round scenario=$scenario workers=$w $t: $r req/s, cpu $(awk -v u="$used" -v hz="$hz" -v d="$duration" 'BEGIN {printf "%.2f", u/hz/d}') cores, preempted $preempted times${e:+, errors $e}" >&2
      done
    done
    declare -A m=() mpc=() mpuc=()
    for t in $run_targets; do
      m[$t]=$(median <<<"${rps[$t]}"); mpc[$t]=$(median <<<"${pc[$t]}"); mpuc[$t]=$(median <<<"${puc[$t]}")
      emit "result scenario=$scenario workers=$w target=$t rps=${m[$t]} p50_ms=$(median <<<"${p50[$t]}") p99_ms=$(median <<<"${p99[$t]}") rps_per_core=${mpc[$t]} rps_per_user_core=${mpuc[$t]} sys_us_per_req=$(median <<<"${sus[$t]}") preempted_per_kreq=$(median <<<"${pk[$t]}") runq_wait_pct=$(median <<<"${rw[$t]}") placement=$placement proxy_cpus=$(cpus_of "${pid[$t]}") rounds_rps=\"${rps[$t]% }\" errors=\"${bad[$t]% }\""
    done
    if [[ " $run_targets " == *" berth-proxy "* ]]; then
      emit "memory scenario=$scenario workers=$w berth-proxy_rss_after_load_mib=$(rss_mib "${pid[berth-proxy]}")"
      for t in $run_targets; do
        [ "$t" = berth-proxy ] && continue
        emit "ratio scenario=$scenario workers=$w berth-proxy/$t rps=$(ratio "${m[berth-proxy]}" "${m[$t]}") per_core=$(ratio "${mpc[berth-proxy]}" "${mpc[$t]}") per_user_core=$(ratio "${mpuc[berth-proxy]}" "${mpuc[$t]}") rps_paired=$(paired "${rps[berth-proxy]}" "${rps[$t]}") per_core_paired=$(paired "${pc[berth-proxy]}" "${pc[$t]}")"
      done
    fi
    if [[ " $run_targets " == *" nginx "* ]]; then
      for t in $run_targets; do
        [[ "$t" == ceiling-* ]] || continue
        emit "ratio scenario=$scenario workers=$w $t/nginx rps=$(ratio "${m[$t]}" "${m[nginx]}") per_core=$(ratio "${mpc[$t]}" "${mpc[nginx]}")"
      done
    fi
    for t in $run_targets; do stop "${pid[$t]}"; done
    unset url pid rps p50 p99 pc puc sus pk rw bad m mpc
  done
  stop "$cp_pid"; stop "$consul_pid"
done

if [ "$out" != - ]; then
  mkdir -p bench/results
  out=${out:-bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-proxy.txt}
  {
    echo "# Berth benchmark: proxy throughput and latency ($mode), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "command: $cmdline"
    echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "load: wrk -t1 -c$conns -d${duration}s --latency, $rounds interleaved rounds, medians; backends: 3 nginx (1 worker, static 200); $([ -n "$pin" ] && echo "--pin: the proxy on the last N cores, the rest on the others, where N < $(nproc)" || echo "every process on every core")"
    echo "versions: $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | sed -n 1p | awk '{print "haproxy " $3}'), traefik $("$traefik" version 2>/dev/null | awk '/^Version/ {print $2}'), wrk $(wrk -v 2>&1 | sed -n 1p | awk '{print $2}')"
    echo "per core = requests / (utime+stime of the proxy's processes over the run); per user core = requests / utime (the proxy's own code, without the kernel's work for its sockets); sys_us_per_req = stime per request; preempted_per_kreq = involuntary context switches of the proxy's threads per 1,000 requests; runq_wait_pct = the share of the time its threads were ready to run that they waited for a CPU (schedstat); berth-proxy --workers N, nginx worker_processes N, haproxy nbthread N, traefik GOMAXPROCS=N"
    echo
    printf '%s\n' "${lines[@]}"
  } >"$out"
  echo "bench: written to $out" >&2
fi
