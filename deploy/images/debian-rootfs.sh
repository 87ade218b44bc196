#!/usr/bin/env bash
# Makes (once) a minimal Debian 12 root filesystem tarball with debootstrap and prints its path. Reruns reuse
# the cached tarball. Used where no image registry is reachable, to build every image locally.
#   usage: debian-rootfs.sh [CACHE_DIR]    (default $BERTH_DEPLOY_CACHE or /var/cache/berth-deploy)
set -euo pipefail
cache=${1:-${BERTH_DEPLOY_CACHE:-/var/cache/berth-deploy}}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
tarball=$cache/debian-bookworm-minbase.tar
if [ ! -s "$tarball" ]; then
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  debootstrap --variant=minbase --include=ca-certificates bookworm "$work/root" "$mirror" >"$work/log" 2>&1 ||
    { tail -n 30 "$work/log" >&2; exit 1; }
  # The image's apt uses the same mirror and keeps no caches, as the official slim image does.
  rm -rf "$work/root"/var/cache/apt/archives/*.deb "$work/root"/var/lib/apt/lists/*
  echo "deb $mirror bookworm main" >"$work/root/etc/apt/sources.list"
  tar -C "$work/root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
echo "$tarball"
