#!/usr/bin/env bash
# make images-e2e: build the current CPU processor's image, tensorflow_cpu_2.7's and our
# litert_cpu's (a converted model, no TensorFlow) for functions-framework/Cloud Run, and
# litert_cpu's for Function Compute's custom container; run each container, drive it over HTTP
# with the official EAS SDK and the bad-input cases (tests/images).  No registry is reachable here, so the base
# images come from debootstrap (bookworm: Python 3.11, bullseye: Python 3.9), imported into a
# Docker daemon this script starts (vfs storage, no iptables, no bridge: builds and containers
# use the host network).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DIR=${TFS_DOCKER_DIR:-/tmp/tfserverless-docker}
export DOCKER_HOST="unix://$DIR/docker.sock"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
current=$(python3 -c 'import json; print(json.load(open("packaging/processors.json"))["current"])')
# <processor>:<debian suite>[:<flavour>] (default cloudrun); the fc flavour (gunicorn, FC's
# custom container: s-image.yaml) on litert_cpu, the smallest runtime: the same CMD and handler
BUILDS=("tensorflow_cpu_$current:bookworm" "tensorflow_cpu_2.7:bullseye" "litert_cpu:bookworm"
        "litert_cpu:bookworm:fc")
# TFS_E2E_BUILDS="litert_cpu:bookworm": only these (one image's rerun)
if [ -n "${TFS_E2E_BUILDS:-}" ]; then read -r -a BUILDS <<<"$TFS_E2E_BUILDS"; fi

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
mkdir -p "$DIR"
started=""
if ! docker info >/dev/null 2>&1; then
  dockerd --storage-driver vfs --iptables=false --bridge=none --data-root "$DIR/data" \
    --exec-root "$DIR/exec" -H "$DOCKER_HOST" --pidfile "$DIR/docker.pid" >"$DIR/dockerd.log" 2>&1 &
  started=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null
fi
# under vfs every layer is a full copy of the image's tree (~13 GB for the current TensorFlow
# image with its build stage): an image is deleted once driven, the next one building
# meanwhile (at most two at once), and only the base images are left behind, or a run (or
# the next one) fills the disk ("no space left on device")
drop_built() {
  docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker images --format '{{.Repository}}:{{.Tag}}' | grep '^tfserverless:' | xargs -r docker rmi -f >/dev/null 2>&1 || true
  docker image prune -f >/dev/null 2>&1 || true
}
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  if docker info >/dev/null 2>&1; then drop_built; fi
  if [ -n "$started" ]; then kill "$started" 2>/dev/null || true; wait "$started" 2>/dev/null || true; fi
}
trap cleanup EXIT
drop_built
need_gb=24
free_gb=$(( $(df -Pk "$DIR" | awk 'NR==2 {print $4}') / 1048576 ))
if [ "$free_gb" -lt "$need_gb" ]; then
  echo "images-e2e: $free_gb GB free under $DIR; two images built at once under vfs need about $need_gb GB" >&2
  exit 1
fi

part() {  # part <build> <n>: its processor (1), suite (2) or flavour (3, default cloudrun)
  local proc suite flavour
  IFS=: read -r proc suite flavour <<<"$1"
  case $2 in 1) echo "$proc" ;; 2) echo "$suite" ;; 3) echo "${flavour:-cloudrun}" ;; esac
}
for b in "${BUILDS[@]}"; do  # the base images first (debootstrap once; then cached)
  suite=$(part "$b" 2)
  if ! docker image inspect "tfserverless-base:$suite" >/dev/null 2>&1; then
    echo "== base image: debootstrap $suite"
    rm -rf "$DIR/rootfs-$suite"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
      "$suite" "$DIR/rootfs-$suite" "$MIRROR" >"$DIR/debootstrap-$suite.log"
    rm -rf "$DIR/rootfs-$suite"/var/cache/apt/archives/*.deb "$DIR/rootfs-$suite"/var/lib/apt/lists/*
    tar -C "$DIR/rootfs-$suite" -c . | docker import - "tfserverless-base:$suite" >/dev/null
    rm -rf "$DIR/rootfs-$suite"
  fi
done

build() {  # build <processor> <suite> <flavour>: its image, its log in $DIR/build-<processor>-<flavour>.log
  local start=$(date +%s)
  "$BIN/python" packaging/build --processor "$1" --flavour "$3" --base-image \
    "tfserverless-base:$2" --out "$DIR/contexts-$1-$3" >"$DIR/build-$1-$3.log" 2>&1 || return 1
  echo "$(( $(date +%s) - start ))" >"$DIR/build-$1-$3.seconds"
}
start_build() {  # in the background: its pid in $building
  local b=$1
  build "$(part "$b" 1)" "$(part "$b" 2)" "$(part "$b" 3)" &
  building=$!
  pids+=("$building")
}

start_build "${BUILDS[0]}"
# the test models, built once for every image's run (while the first image builds)
rm -rf "$DIR/models"
"$BIN/python" tests/models.py "$DIR/models" tf1_mnist >"$DIR/models.txt"
chmod -R a+rX "$DIR/models"

failed=()
for i in "${!BUILDS[@]}"; do
  name="$(part "${BUILDS[$i]}" 1)-$(part "${BUILDS[$i]}" 3)"
  image="tfserverless:$name"
  wait "$building" || { echo "== build $name failed:"; tail -n 40 "$DIR/build-$name.log"; exit 1; }
  size=$(docker image inspect -f '{{.Size}}' "$image")
  echo "== built $image in $(cat "$DIR/build-$name.seconds")s, $(( size / 1000000 )) MB"
  next=$(( i + 1 ))
  if [ "$next" -lt "${#BUILDS[@]}" ]; then start_build "${BUILDS[$next]}"; fi
  echo "== run and drive: $image"
  TFS_IMAGES="$image" TFS_MODELS_LIST="$DIR/models.txt" EAS_PYTHON="$PWD/.venv-eas/bin/python" \
    "$BIN/pytest" -q -p no:cacheprovider tests/images || failed+=("$image")
  docker ps -aq --filter "ancestor=$image" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker rmi -f "$image" >/dev/null 2>&1 || true  # the next image may be building: no prune yet
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "images-e2e: failed on ${failed[*]}" >&2
  exit 1
fi
