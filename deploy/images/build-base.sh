#!/usr/bin/env bash
# Builds localhost/prelabel-base:bookworm, a minimal Debian 12 image with Python 3.11,
# from Debian packages (mmdebstrap), for machines that cannot pull public images.
# Pass it to every Dockerfile here as --build-arg BASE=localhost/prelabel-base:bookworm.
set -euo pipefail
TAG=${1:-localhost/prelabel-base:bookworm}
ENGINE=${ENGINE:-podman}
if $ENGINE image exists "$TAG" 2>/dev/null; then
  echo "$TAG exists"
  exit 0
fi
ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
# libpython3.11: Triton's Python-backend stub links it; tini: PID 1 that forwards SIGTERM.
mmdebstrap --variant=minbase --aptopt='Acquire::Check-Valid-Until "false"' \
  --include=python3,python3-pip,python3-venv,python-is-python3,libpython3.11,ca-certificates,tini \
  bookworm "$ROOTFS/rootfs"
tar -C "$ROOTFS/rootfs" -c . | $ENGINE import --change 'CMD ["/bin/bash"]' - "$TAG"
