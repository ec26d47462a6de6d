#!/usr/bin/env bash
# Builds, from Debian packages only, local stand-ins for the two public base images the
# deployment uses, for a machine that cannot pull from an image registry:
#
#   algoperf-local/debian:bookworm              debootstrap's minimal bookworm (the root of both)
#   algoperf-local/python:3.11-slim-bookworm    for python:3.11-slim-bookworm (Python 3.11.2)
#   algoperf-local/postgres:15-bookworm         for postgres:16-bookworm (PostgreSQL 15, same
#                                               POSTGRES_* variables and init-script folder)
#
# Then build and start the stack with them (docs/deployment.md, "Offline machine"):
#   docker build --build-arg PYTHON_IMAGE=algoperf-local/python:3.11-slim-bookworm ...
#   POSTGRES_IMAGE=algoperf-local/postgres:15-bookworm docker-compose ... up -d
#
# Needs root, debootstrap and a Docker engine; contacts only the Debian mirror (MIRROR).
# The debootstrap image is kept once made; --rebuild makes all three again from scratch.
set -euo pipefail

MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
PREFIX=${ALGOPERF_LOCAL_BASE_PREFIX:-algoperf-local}
DEBIAN_IMAGE=$PREFIX/debian:$SUITE
PYTHON_IMAGE=$PREFIX/python:3.11-slim-$SUITE
POSTGRES_IMAGE=$PREFIX/postgres:15-$SUITE
HERE=$(cd "$(dirname "$0")" && pwd)
# Debian's client has BuildKit built in; a newer client without buildx would refuse DOCKER_BUILDKIT=1.
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || echo docker)}
rebuild=false

usage() { echo "usage: $0 [--rebuild]   (builds $DEBIAN_IMAGE, $PYTHON_IMAGE, $POSTGRES_IMAGE)"; }
for arg in "$@"; do
  case $arg in
    --rebuild) rebuild=true ;;
    -h|--help) usage; exit 0 ;;
    *) echo "local-base: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

have_image() { ! $rebuild && "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

if ! "$DOCKER" info >/dev/null 2>&1; then
  echo "local-base: no Docker engine answers ('$DOCKER info' failed); start dockerd first" >&2
  exit 1
fi

if have_image "$DEBIAN_IMAGE"; then
  echo "local-base: $DEBIAN_IMAGE exists"
else
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "local-base: debootstrap is missing: apt-get install debootstrap" >&2
    exit 1
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "local-base: debootstrap needs root (it creates device nodes and chroots)" >&2
    exit 1
  fi
  rootfs=$(mktemp -d /tmp/algoperf-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "local-base: debootstrap $SUITE from $MIRROR (about 30 s) ..."
  debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; echo "local-base: debootstrap failed (log: $rootfs.log)" >&2; exit 1; }
  rm -f "$rootfs.log"
  # Smaller and reproducible: no package lists or caches in the image; apt in derived
  # images starts with `apt-get update` like in Debian's own images.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | "$DOCKER" import \
    --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
    --message "debootstrap --variant=minbase $SUITE $MIRROR" - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  echo "local-base: built $DEBIAN_IMAGE"
fi

# Always built: the layer cache makes an unchanged image instant, and a changed
# Dockerfile or entrypoint is picked up.
build() {  # build IMAGE DOCKERFILE
  echo "local-base: building $1 ..."
  DOCKER_BUILDKIT=1 "$DOCKER" build --quiet $($rebuild && echo --no-cache) --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" --build-arg "MIRROR=$MIRROR" \
    -f "$HERE/$2" -t "$1" "$HERE" >/dev/null
  echo "local-base: built $1"
}
build "$PYTHON_IMAGE" python.Dockerfile
build "$POSTGRES_IMAGE" postgres.Dockerfile
