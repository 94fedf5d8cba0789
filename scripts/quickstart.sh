#!/usr/bin/env bash
# Berth's quick start: the article's demo, for real, in one command on a fresh Debian machine.
#
#   scripts/quickstart.sh           set up, start everything, show the routing, keep running
#                                   until Ctrl-C, then stop everything it started
#   scripts/quickstart.sh --once    the same, but stop right after the demonstration; exits 0
#                                   only if routing worked (for tests and CI)
#   options: --no-setup (skip scripts/setup.sh), --no-build (skip cargo build), -h/--help
#
# What it runs:
#   1. scripts/setup.sh consul + docker: Consul into .tools/, Docker Engine installed and started
#      when `docker info` fails.
#   2. cargo build --workspace --bins (dev profile, as the tests) and deploy/build-images.sh demo
#      (the berth/demo image, FROM scratch: nothing is pulled from a registry).
#   3. As host processes: a Consul dev agent, berth-control, two berth-proxy (entrypoint http on
#      127.0.0.1:8080 and 127.0.0.1:8081), berth-agent with Registrator's command line and
#      -ip=127.0.0.1.
#   4. The demo containers the article's way, `docker run` with its SERVICE_TAGS: web_go three
#      times (port 9090 published on a random 127.0.0.1 port), web_python once (5000 as 9091).
#   5. Requests to go.traefix.example.localhost through each proxy, answered in turn by the three
#      web_go containers, and one to python.traefix.example.localhost.
#
# Logs: .run/logs/<process>.log. Everything started is stopped by its pid or container id.
# Ports (all on 127.0.0.1) can be changed with these environment variables:
#   BERTH_QS_CONSUL_PORT=8500  BERTH_QS_CONTROL_GRPC_PORT=18000  BERTH_QS_CONTROL_ADMIN_PORT=18001
#   BERTH_QS_PROXY1_PORT=8080  BERTH_QS_PROXY1_ADMIN_PORT=18081
#   BERTH_QS_PROXY2_PORT=8081  BERTH_QS_PROXY2_ADMIN_PORT=18082  BERTH_QS_PYTHON_PORT=9091
#   (Consul's internal server/serf ports, BERTH_QS_CONSUL_SERVER_PORT, _SERF_LAN_PORT and
#   _SERF_WAN_PORT, default to the first free ports from 18300 up.)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run_dir=$root/.run
logs=$run_dir/logs

consul_port=${BERTH_QS_CONSUL_PORT:-8500}
consul_server_port=${BERTH_QS_CONSUL_SERVER_PORT:-}
consul_serf_lan_port=${BERTH_QS_CONSUL_SERF_LAN_PORT:-}
consul_serf_wan_port=${BERTH_QS_CONSUL_SERF_WAN_PORT:-}
control_grpc_port=${BERTH_QS_CONTROL_GRPC_PORT:-18000}
control_admin_port=${BERTH_QS_CONTROL_ADMIN_PORT:-18001}
proxy1_port=${BERTH_QS_PROXY1_PORT:-8080}
proxy1_admin_port=${BERTH_QS_PROXY1_ADMIN_PORT:-18081}
proxy2_port=${BERTH_QS_PROXY2_PORT:-8081}
proxy2_admin_port=${BERTH_QS_PROXY2_ADMIN_PORT:-18082}
python_port=${BERTH_QS_PYTHON_PORT:-9091}

go_host=go.traefix.example.localhost
python_host=python.traefix.example.localhost
go_tags="traefik.enable=true,traefik.frontend.entryPoints=http,traefik.frontend.rule=Host:$go_host"
python_tags="traefik.enable=true,traefik.frontend.entryPoints=http,traefik.frontend.rule=Host:$python_host"

once=
setup=1
build=1
for arg in "$@"; do
  case "$arg" in
    --once) once=1 ;;
    --no-setup) setup= ;;
    --no-build) build= ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) printf 'quickstart: unknown argument %s (see --help)\n' "$arg" >&2; exit 2 ;;
  esac
done

if [ -t 1 ]; then
  say() { printf '\033[1mquickstart:\033[0m %s\n' "$*"; }
else
  say() { printf 'quickstart: %s\n' "$*"; }
fi
warn() { printf 'quickstart: %s\n' "$*" >&2; }
die() { warn "error: $*"; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- what this run started, stopped on exit (by pid / container id only) ----------------------
pids=()        # "name:pid", in start order
containers=()  # container ids
cleaning=

cleanup() {
  [ -z "$cleaning" ] || return 0
  cleaning=1
  trap - INT TERM
  if [ ${#containers[@]} -gt 0 ]; then
    say "removing the demo containers"
    docker rm -f "${containers[@]}" >/dev/null 2>&1 || warn "could not remove containers ${containers[*]}"
  fi
  local i entry name pid deadline
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    entry=${pids[$i]}
    name=${entry%%:*}
    pid=${entry##*:}
    kill -0 "$pid" 2>/dev/null || continue
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      warn "$name (pid $pid) did not stop within 10s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  rm -f "$run_dir/quickstart.pid"
}
trap cleanup EXIT
trap 'echo; say "interrupted"; exit 130' INT TERM

# --- set-up --------------------------------------------------------------------------------
if [ -n "$setup" ]; then
  say "setting up (scripts/setup.sh consul, docker)"
  bash "$root/scripts/setup.sh" consul
  bash "$root/scripts/setup.sh" docker
fi
docker info >/dev/null 2>&1 || die "no Docker engine answers \`docker info\` (run scripts/setup.sh docker)"
if ! command -v curl >/dev/null 2>&1; then
  say "installing curl"
  if ! { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }; then
    die "curl is missing and could not be installed"
  fi
fi

consul_bin=$root/.tools/consul/usr/bin/consul
[ -x "$consul_bin" ] || consul_bin=$(command -v consul || true)
if [ -z "$consul_bin" ] || [ ! -x "$consul_bin" ]; then
  die "consul not found in .tools/ nor on PATH (run scripts/setup.sh consul)"
fi

if [ -n "$build" ]; then
  command -v cargo >/dev/null 2>&1 || die "cargo is not installed (https://rustup.rs)"
  say "building the workspace binaries (cargo build --workspace --bins)"
  (cd "$root" && cargo build --workspace --bins)
fi
bin=$root/target/debug
[ -n "${CARGO_TARGET_DIR:-}" ] && bin=$CARGO_TARGET_DIR/debug
for b in berth-control berth-proxy berth-agent berth-demo; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing: run cargo build --workspace --bins"
done
say "building the demo image (deploy/build-images.sh demo)"
bash "$root/deploy/build-images.sh" --bin-dir "$bin" demo

# --- helpers -------------------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first port from $1 up that nothing on 127.0.0.1 accepts connections on.
free_port_from() {
  local p=$1
  while port_in_use "$p" || [[ "$taken" == *" $p "* ]]; do
    p=$((p + 1))
    [ "$p" -lt $(($1 + 200)) ] || die "no free port found from $1 to $p"
  done
  printf '%s\n' "$p"
}
taken=" " # ports already chosen (free_port_from runs in a subshell, so the caller records them)
[ -n "$consul_server_port" ] || consul_server_port=$(free_port_from 18300)
taken="$taken $consul_server_port "
[ -n "$consul_serf_lan_port" ] || consul_serf_lan_port=$(free_port_from $((consul_server_port + 1)))
taken="$taken $consul_serf_lan_port "
[ -n "$consul_serf_wan_port" ] || consul_serf_wan_port=$(free_port_from $((consul_serf_lan_port + 1)))

for p in "$consul_port" "$consul_server_port" "$consul_serf_lan_port" "$consul_serf_wan_port" \
  "$control_grpc_port" "$control_admin_port" "$proxy1_port" "$proxy1_admin_port" "$proxy2_port" \
  "$proxy2_admin_port" "$python_port"; do
  if port_in_use "$p"; then
    die "port 127.0.0.1:$p is already in use (another quick start still running?); free it or choose other ports with the BERTH_QS_*_PORT variables (see --help)"
  fi
done

mkdir -p "$logs"
echo $$ >"$run_dir/quickstart.pid"

# start NAME PROGRAM ARGS...: a background host process, its output in .run/logs/.
start() {
  local name=$1
  shift
  RUST_LOG=${RUST_LOG:-info} "$@" >"$logs/$name.log" 2>&1 </dev/null &
  pids+=("$name:$!")
  say "started $name (pid $!, log .run/logs/$name.log)"
}

pid_of() {
  local entry
  for entry in "${pids[@]}"; do
    [ "${entry%%:*}" = "$1" ] && { printf '%s\n' "${entry##*:}"; return 0; }
  done
  return 1
}

# wait_for WHAT TIMEOUT_S PROCESS COMMAND...: polls COMMAND until it succeeds; fails with the
# process's log if it does not within the deadline or the process exits.
wait_for() {
  local what=$1 timeout=$2 process=$3 pid
  shift 3
  pid=$(pid_of "$process")
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      warn "$process exited while waiting for $what; the end of .run/logs/$process.log:"
      tail -n 30 "$logs/$process.log" >&2 || true
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      warn "timed out after ${timeout}s waiting for $what; the end of .run/logs/$process.log:"
      tail -n 30 "$logs/$process.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

# Fails (with the end of its log) if a process this run started has exited.
check_alive() {
  local entry
  for entry in "${pids[@]}"; do
    if ! kill -0 "${entry##*:}" 2>/dev/null; then
      warn "${entry%%:*} (pid ${entry##*:}) exited; the end of .run/logs/${entry%%:*}.log:"
      tail -n 20 "$logs/${entry%%:*}.log" >&2 || true
      exit 1
    fi
  done
}

consul_has_leader() { curl -fsS --max-time 2 "http://127.0.0.1:$consul_port/v1/status/leader" | grep ':' >/dev/null; }
http_ok() { curl -fsS --max-time 2 -o /dev/null "$1"; }
# Any HTTP answer at all (even 404 for an unknown host) means the listener is up.
http_answers() { [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$1")" != "000" ]; }

# get PORT HOST: one request through a proxy; prints "<status> <instance> <body>".
get() {
  local out status instance
  out=$(curl -s --max-time 5 -H "Host: $2" -D - "http://127.0.0.1:$1/" 2>/dev/null) || { echo "000 - (no answer)"; return 0; }
  status=$(printf '%s\n' "$out" | sed -n 1p | awk '{print $2}')
  instance=$(printf '%s\n' "$out" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-demo-instance" { print $2 }')
  printf '%s %s %s\n' "${status:-000}" "${instance:--}" "$(printf '%s\n' "$out" | tr -d '\r' | sed '1,/^$/d' | sed -n 1p)"
}

# --- the stack -----------------------------------------------------------------------------
mkdir -p "$run_dir/consul"
rm -rf "${run_dir:?}/consul/"*
start consul "$consul_bin" agent -dev -node berth-quickstart -bind 127.0.0.1 -client 127.0.0.1 \
  -data-dir "$run_dir/consul" \
  -hcl "ports { http = $consul_port, server = $consul_server_port, serf_lan = $consul_serf_lan_port, serf_wan = $consul_serf_wan_port, dns = -1, grpc = -1 }"
wait_for "Consul to elect itself leader" 30 consul consul_has_leader

start berth-control "$bin/berth-control" --consul-addr "http://127.0.0.1:$consul_port" \
  --grpc-addr "127.0.0.1:$control_grpc_port" --admin-addr "127.0.0.1:$control_admin_port" \
  --prefix traefik --domain localhost
wait_for "berth-control to be ready" 30 berth-control http_ok "http://127.0.0.1:$control_admin_port/healthz"

start proxy-1 "$bin/berth-proxy" --control-plane "http://127.0.0.1:$control_grpc_port" \
  --entrypoint "http=127.0.0.1:$proxy1_port" --admin-addr "127.0.0.1:$proxy1_admin_port" --node-id proxy-1 --drain-grace 0
start proxy-2 "$bin/berth-proxy" --control-plane "http://127.0.0.1:$control_grpc_port" \
  --entrypoint "http=127.0.0.1:$proxy2_port" --admin-addr "127.0.0.1:$proxy2_admin_port" --node-id proxy-2 --drain-grace 0
wait_for "proxy-1 to listen on 127.0.0.1:$proxy1_port" 30 proxy-1 http_answers "http://127.0.0.1:$proxy1_port/"
wait_for "proxy-2 to listen on 127.0.0.1:$proxy2_port" 30 proxy-2 http_answers "http://127.0.0.1:$proxy2_port/"

# Registrator's command line, exactly as the article runs it (with this host's address).
start berth-agent "$bin/berth-agent" -resync=1000 -retry-attempts=-1 -retry-interval=2000 \
  -ip=127.0.0.1 "consul://127.0.0.1:$consul_port"

# The article's demo services. SERVICE_NAME is set because both use the same image (berth/demo).
run_container() {
  local id
  id=$(docker run -d "$@") || die "docker run $* failed"
  containers+=("$id")
}
for i in 1 2 3; do
  run_container --name "berth-qs$$-web_go-$i" --label "berth.quickstart=$$" -p 127.0.0.1::9090 \
    -e SERVICE_NAME=web_go -e "SERVICE_TAGS=$go_tags" \
    -e DEMO_SERVICE=web_go -e "DEMO_NAME=go-$i" berth/demo:dev
done
run_container --name "berth-qs$$-web_python" --label "berth.quickstart=$$" -p "127.0.0.1:$python_port:5000" \
  -e SERVICE_NAME=web_python -e "SERVICE_TAGS=$python_tags" \
  -e DEMO_SERVICE=web_python -e DEMO_LISTEN=0.0.0.0:5000 -e DEMO_NAME=python-1 berth/demo:dev
say "started web_go x3 and web_python: $(docker ps --filter "label=berth.quickstart=$$" --format '{{.Names}} ({{.Ports}})' | paste -sd' ' -)"

# --- the demonstration ---------------------------------------------------------------------
# Wait (with a deadline) until each proxy has been answered by all three web_go containers.
routes_to_all() {
  local port=$1 seen=" " n=0 line instance
  while [ $n -lt 12 ]; do
    line=$(get "$port" "$go_host")
    instance=$(awk '$1 == 200 { print $2 }' <<<"$line")
    case "$instance" in go-1|go-2|go-3) case "$seen" in *" $instance "*) ;; *) seen="$seen$instance " ;; esac ;; esac
    [ "$(wc -w <<<"$seen")" -eq 3 ] && return 0
    n=$((n + 1))
  done
  return 1
}
ok=1
for proxy in "proxy-1:$proxy1_port" "proxy-2:$proxy2_port"; do
  name=${proxy%%:*}
  port=${proxy##*:}
  deadline=$((SECONDS + 60))
  until routes_to_all "$port"; do
    check_alive
    if [ $SECONDS -ge $deadline ]; then
      warn "$name (127.0.0.1:$port) did not route $go_host to all three web_go containers within 60s; last answer: $(get "$port" "$go_host")"
      warn "see .run/logs/berth-agent.log, berth-control.log and $name.log"
      ok=
      break
    fi
    sleep 0.2
  done
done

if [ -n "$ok" ]; then
  echo
  for proxy in "proxy-1:$proxy1_port" "proxy-2:$proxy2_port"; do
    name=${proxy%%:*}
    port=${proxy##*:}
    for _ in 1 2 3; do
      printf '  curl -H "Host: %s" http://127.0.0.1:%s/  ->  %s\n' "$go_host" "$port" "$(get "$port" "$go_host" | cut -d' ' -f3-)"
    done
  done
  deadline=$((SECONDS + 30))
  until line=$(get "$proxy1_port" "$python_host") && [ "${line%% *}" = 200 ]; do
    if [ $SECONDS -ge $deadline ]; then
      warn "proxy-1 did not route $python_host within 30s; last answer: $line"
      ok=
      break
    fi
    sleep 0.2
  done
  if [ -n "$ok" ]; then
    printf '  curl -H "Host: %s" http://127.0.0.1:%s/  ->  %s\n' "$python_host" "$proxy1_port" "$(cut -d' ' -f3- <<<"$line")"
  fi
  echo
fi

if [ -z "$ok" ]; then
  warn "routing did not work; logs are in .run/logs/"
  exit 1
fi
say "routing works: $go_host is answered in turn by go-1, go-2 and go-3 through both proxies"

if [ -n "$once" ]; then
  say "--once: stopping everything"
  exit 0
fi

cat <<EOF

Berth is running the article's demo. Try it:

  curl -H 'Host: $go_host' http://127.0.0.1:$proxy1_port/
  curl -H 'Host: $go_host' http://127.0.0.1:$proxy2_port/
  curl -H 'Host: $python_host' http://127.0.0.1:$proxy1_port/

  Scale web_go up (the agent registers it, the proxies route to it within a moment):
  docker run -d --rm -p 127.0.0.1::9090 -e SERVICE_NAME=web_go -e DEMO_SERVICE=web_go \\
    -e SERVICE_TAGS=$go_tags berth/demo:dev
  (remove it yourself with docker rm -f <id>: the quick start stops only what it started)

Admin:
  Consul UI / API        http://127.0.0.1:$consul_port/ui/
  berth-control          http://127.0.0.1:$control_admin_port/api/snapshot   (/healthz, /api/proxies)
  proxy-1                http://127.0.0.1:$proxy1_admin_port/api/snapshot
  proxy-2                http://127.0.0.1:$proxy2_admin_port/api/snapshot
Logs: $logs/

Press Ctrl-C to stop everything.
EOF

# Keep running until Ctrl-C; if a daemon dies meanwhile, say so and stop.
while true; do
  check_alive
  sleep 1 &
  wait $! || true
done
