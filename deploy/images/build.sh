#!/usr/bin/env bash
# Builds every prelabel image with podman (or ENGINE=docker) from the repository root.
#   deploy/images/build.sh [image ...]     default: all; names as in IMAGES below
# BASE defaults to a Debian base built locally from packages (build-base.sh), for
# machines that cannot pull public images; BASE=python:3.11-slim builds the upstream way.
# CI=1 also builds the stand-ins for the public images compose uses (deploy/compose/ci).
set -euo pipefail
cd "$(dirname "$0")/../.."
ENGINE=${ENGINE:-podman}
TAG=${TAG:-dev}
BASE=${BASE:-localhost/prelabel-base:bookworm}
if [ "$BASE" = localhost/prelabel-base:bookworm ]; then
  deploy/images/build-base.sh "$BASE"
fi
declare -A IMAGES=(
  [dataset]=services/dataset/Dockerfile
  [trigger-router]=services/trigger-router/Dockerfile
  [model-serving]=services/model-serving/Dockerfile
  [annotation]=services/annotation/Dockerfile
  [billing]=services/billing/Dockerfile
  [console]=services/console/Dockerfile
  [model-serving-worker]=deploy/images/worker.Dockerfile
  [triton-cpu]=deploy/images/triton-cpu.Dockerfile
)
declare -A CI_IMAGES=(
  [ci-rabbitmq]=deploy/compose/ci/rabbitmq.Dockerfile
  [ci-postgres]=deploy/compose/ci/postgres.Dockerfile
  [ci-seaweedfs]=deploy/compose/ci/seaweedfs.Dockerfile
  [ci-prometheus]=deploy/compose/ci/prometheus.Dockerfile
  [ci-nginx]=deploy/compose/ci/nginx.Dockerfile
)
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  names=("${!IMAGES[@]}")
  if [ "${CI:-0}" = 1 ]; then names+=("${!CI_IMAGES[@]}"); fi
fi
# A proxy's CA bundle, where the host has one, for pip/uv/apt inside the build.
mounts=()
# HEALTHCHECK is part of the Docker image format only.
format=()
if [ "$ENGINE" = podman ]; then format=(--format docker); fi
CA=/etc/ssl/certs/ca-certificates.crt
if [ "$ENGINE" = podman ] && [ -f "$CA" ]; then mounts=(-v "$CA:$CA:ro"); fi
# Every image and build stage carries LABEL: a rebuild leaves the image it replaces (and
# that image's build stage) untagged, and the prune below removes exactly those, so
# repeated builds do not fill the disk. The build stage is tagged (<name>:<tag>-build)
# to stay out of that prune: it is the layer cache the next build reuses.
LABEL=io.prelabel.build=1
for name in "${names[@]}"; do
  file=${IMAGES[$name]:-${CI_IMAGES[$name]:-}}
  if [ -z "$file" ]; then echo "unknown image $name" >&2; exit 2; fi
  echo "== prelabel/$name:$TAG ($file)"
  build=("$ENGINE" build "${mounts[@]}" "${format[@]}" --label "$LABEL" --build-arg BASE="$BASE" -f "$file")
  if grep -q -E '^FROM .* AS build$' "$file"; then
    "${build[@]}" --target build -t "prelabel/$name:$TAG-build" .
  fi
  "${build[@]}" -t "prelabel/$name:$TAG" .
done
$ENGINE image prune -f --filter "label=$LABEL" >/dev/null
