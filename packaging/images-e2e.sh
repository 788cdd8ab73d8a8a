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
cleanup() { if [ -n "$started" ]; then kill "$started" 2>/dev/null || true; wait "$started" 2>/dev/null || true; fi; }
trap cleanup EXIT
# each run re-tags the images it builds; what it replaced is left untagged (~4 GB a run under
# vfs): drop those, or a few runs fill the disk ("no space left on device" mid-build)
docker image prune -f >/dev/null

images=()
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
  echo "== build $proc (cloudrun) on tfserverless-base:$suite"
  start=$(date +%s)
  "$BIN/python" packaging/build --processor "$proc" --flavour cloudrun \
    --base-image "tfserverless-base:$suite" --out "$DIR/contexts" >"$DIR/build-$proc.log" 2>&1 \
    || { tail -n 40 "$DIR/build-$proc.log"; exit 1; }
  size=$(docker image inspect -f '{{.Size}}' "tfserverless:$proc-cloudrun")
  echo "   built tfserverless:$proc-cloudrun in $(( $(date +%s) - start ))s, $(( size / 1000000 )) MB"
  images+=("tfserverless:$proc-cloudrun")
done

echo "== run and drive: ${images[*]}"
TFS_IMAGES=$(IFS=,; echo "${images[*]}") EAS_PYTHON="$PWD/.venv-eas/bin/python" \
  "$BIN/pytest" -q -p no:cacheprovider tests/images
