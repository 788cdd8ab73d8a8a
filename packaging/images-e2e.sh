#!/usr/bin/env bash
# make images-e2e: build the current CPU processor's image, tensorflow_cpu_2.7's and our
# litert_cpu's (a converted model, no TensorFlow) for functions-framework/Cloud Run, run each container, drive it over HTTP with the official EAS
# SDK and the bad-input cases (tests/images).  No registry is reachable here, so the base
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
BUILDS=("tensorflow_cpu_$current:bookworm" "tensorflow_cpu_2.7:bullseye" "litert_cpu:bookworm")

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
# image with its build stage): build, drive and delete one image at a time, and leave only the
# base images behind, or a run (or the next one) fills the disk ("no space left on device")
drop_built() {
  docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker images --format '{{.Repository}}:{{.Tag}}' | grep '^tfserverless:' | xargs -r docker rmi -f >/dev/null 2>&1 || true
  docker image prune -f >/dev/null 2>&1 || true
}
cleanup() {
  if docker info >/dev/null 2>&1; then drop_built; fi
  if [ -n "$started" ]; then kill "$started" 2>/dev/null || true; wait "$started" 2>/dev/null || true; fi
}
trap cleanup EXIT
drop_built
need_gb=8
free_gb=$(( $(df -Pk "$DIR" | awk 'NR==2 {print $4}') / 1048576 ))
if [ "$free_gb" -lt "$need_gb" ]; then
  echo "images-e2e: $free_gb GB free under $DIR; one image built under vfs needs about $need_gb GB" >&2
  exit 1
fi

# the test models, built once for every image's run
rm -rf "$DIR/models"
"$BIN/python" tests/models.py "$DIR/models" tf1_mnist >"$DIR/models.txt"
chmod -R a+rX "$DIR/models"

failed=()
for b in "${BUILDS[@]}"; do
  proc=${b%%:*}; suite=${b##*:}
  if ! docker image inspect "tfserverless-base:$suite" >/dev/null 2>&1; then
    echo "== base image: debootstrap $suite"
    rm -rf "$DIR/rootfs-$suite"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
      "$suite" "$DIR/rootfs-$suite" "$MIRROR" >"$DIR/debootstrap-$suite.log"
    rm -rf "$DIR/rootfs-$suite"/var/cache/apt/archives/*.deb "$DIR/rootfs-$suite"/var/lib/apt/lists/*
    tar -C "$DIR/rootfs-$suite" -c . | docker import - "tfserverless-base:$suite" >/dev/null
    rm -rf "$DIR/rootfs-$suite"
  fi
  image="tfserverless:$proc-cloudrun"
  echo "== build $proc (cloudrun) on tfserverless-base:$suite"
  start=$(date +%s)
  "$BIN/python" packaging/build --processor "$proc" --flavour cloudrun \
    --base-image "tfserverless-base:$suite" --out "$DIR/contexts" >"$DIR/build-$proc.log" 2>&1 \
    || { tail -n 40 "$DIR/build-$proc.log"; exit 1; }
  size=$(docker image inspect -f '{{.Size}}' "$image")
  echo "   built $image in $(( $(date +%s) - start ))s, $(( size / 1000000 )) MB"
  echo "== run and drive: $image"
  TFS_IMAGES="$image" TFS_MODELS_LIST="$DIR/models.txt" EAS_PYTHON="$PWD/.venv-eas/bin/python" \
    "$BIN/pytest" -q -p no:cacheprovider tests/images || failed+=("$image")
  drop_built
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "images-e2e: failed on ${failed[*]}" >&2
  exit 1
fi
