#!/usr/bin/env bash
# Builds Berth's container images FROM scratch out of local binaries: nothing is pulled from any
# registry. Each image holds one binary plus the shared libraries `ldd` lists for it (and the
# dynamic loader), so the binaries are the very ones cargo built for the tests: no other
# toolchain, target or flags.
#
#   deploy/build-images.sh [OPTIONS] [IMAGE...]
#
#   IMAGE      demo control proxy agent consul (default: all of them), built as berth/<IMAGE>:dev
#              demo    -> target/<profile>/berth-demo     (the demo backend, with a HEALTHCHECK)
#              control -> target/<profile>/berth-control
#              proxy   -> target/<profile>/berth-proxy
#              agent   -> target/<profile>/berth-agent
#              consul  -> consul from .tools/ (scripts/setup.sh consul) or PATH
#   --profile P  cargo profile whose binaries to use: dev (default, target/debug), release, ...
#   --bin-dir D  take the binaries from directory D instead
#   --cargo      run `cargo build --workspace --bins [--profile P]` first (otherwise a missing
#                binary is an error telling you to build it)
#   --tag T      image tag (default: dev)
#   -q, --quiet  print only the image names built
#
# Fast when nothing changed: the image content is identical, so docker's build cache answers.
# Concurrent runs (parallel test processes) are serialized with a lock file in the target dir.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
all_images=(demo control proxy agent consul)

profile=dev
bin_dir=
run_cargo=
tag=dev
quiet=
images=()

die() { printf 'build-images: error: %s\n' "$*" >&2; exit 1; }
log() { [ -n "$quiet" ] || printf 'build-images: %s\n' "$*" >&2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || die "--profile needs a value"; profile=$2; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value"; bin_dir=$2; shift 2 ;;
    --bin-dir=*) bin_dir=${1#*=}; shift ;;
    --tag) [ $# -ge 2 ] || die "--tag needs a value"; tag=$2; shift 2 ;;
    --tag=*) tag=${1#*=}; shift ;;
    --cargo) run_cargo=1; shift ;;
    -q|--quiet) quiet=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      case " ${all_images[*]} " in
        *" $1 "*) images+=("$1") ;;
        *) die "unknown image '$1' (expected one of: ${all_images[*]})" ;;
      esac
      shift ;;
  esac
done
[ ${#images[@]} -gt 0 ] || images=("${all_images[@]}")

if [ -z "$bin_dir" ]; then
  case "$profile" in
    dev) bin_dir=$target_dir/debug ;;
    *) bin_dir=$target_dir/$profile ;;
  esac
fi

command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed (run scripts/setup.sh docker)"
docker info >/dev/null 2>&1 || die "no Docker engine answers \`docker info\` (run scripts/setup.sh docker, or set DOCKER_HOST)"
command -v ldd >/dev/null 2>&1 || die "ldd is missing (Debian package libc-bin)"

# Without the buildx plugin, a recent docker CLI uses the classic builder (with a warning);
# choose it explicitly so the output is the same everywhere. With buildx, BuildKit is fine.
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

if [ -n "$run_cargo" ]; then
  log "cargo build --workspace --bins --profile $profile"
  (cd "$root" && cargo build --workspace --bins --profile "$profile")
fi

binary_of() {
  case "$1" in
    demo) printf '%s\n' "$bin_dir/berth-demo" ;;
    control) printf '%s\n' "$bin_dir/berth-control" ;;
    proxy) printf '%s\n' "$bin_dir/berth-proxy" ;;
    agent) printf '%s\n' "$bin_dir/berth-agent" ;;
    consul)
      if [ -x "$root/.tools/consul/usr/bin/consul" ]; then
        printf '%s\n' "$root/.tools/consul/usr/bin/consul"
      elif command -v consul >/dev/null 2>&1; then
        command -v consul
      else
        printf '%s\n' "$root/.tools/consul/usr/bin/consul"
      fi ;;
  esac
}

# Check every binary before building anything, so the error names all that is missing.
missing=()
for image in "${images[@]}"; do
  bin=$(binary_of "$image")
  [ -x "$bin" ] || missing+=("$image ($bin)")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$profile" = dev ]; then
    hint="build them with \`cargo build --workspace --bins\`, or pass --cargo"
  else
    hint="build them with \`cargo build --workspace --bins --profile $profile\`, or pass --cargo"
  fi
  case " ${missing[*]} " in *" consul ("*) hint="$hint; for consul run scripts/setup.sh consul" ;; esac
  die "missing binaries: ${missing[*]}: $hint"
fi

# The shared libraries a binary needs, as absolute paths (the loader included); none if static.
libraries_of() {
  local out
  if ! out=$(ldd "$1" 2>&1); then
    case "$out" in
      *"not a dynamic executable"*|*"statically linked"*) return 0 ;;
      *) die "ldd $1 failed: $out" ;;
    esac
  fi
  if grep -q 'not found' <<<"$out"; then
    die "ldd $1: some libraries are not found on this host:"$'\n'"$out"
  fi
  awk '$2 == "=>" { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }' <<<"$out"
}

state_dir=$target_dir/images
mkdir -p "$state_dir"
# One build at a time on this machine (parallel test processes call this script concurrently).
exec 9>"$state_dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

stage=$(mktemp -d "$state_dir/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

build_one() {
  local image=$1 bin name ctx lib ref
  bin=$(binary_of "$image")
  name=$(basename "$bin")
  ctx=$stage/$image
  mkdir -p "$ctx/rootfs/tmp"
  chmod 1777 "$ctx/rootfs/tmp"
  cp -L "$bin" "$ctx/rootfs/$name"
  while IFS= read -r lib; do
    [ -n "$lib" ] || continue
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done < <(libraries_of "$bin")
  cp "$root/deploy/docker/$image.Dockerfile" "$ctx/Dockerfile"
  ref=berth/$image:$tag
  log "building $ref from $bin"
  local out
  if ! out=$(docker build --quiet --tag "$ref" "$ctx" 2>&1); then
    die "docker build of $ref failed:"$'\n'"$out"
  fi
  out=$(tail -n 1 <<<"$out")
  if [ -n "$quiet" ]; then printf '%s\n' "$ref"; else log "built $ref (${out#sha256:})"; fi
}

started=$SECONDS
for image in "${images[@]}"; do
  build_one "$image"
done
log "done in $((SECONDS - started))s: ${images[*]}"
