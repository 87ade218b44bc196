#!/usr/bin/env bash
# Builds, without any image registry, every image docker-compose.yml and its test use: a Debian base from
# debootstrap (cached), stand-ins for node, postgres, nats, minio and registry (see README.md), and Berth's
# own image from the repo's Dockerfile on top of them. Prints the environment (KEY=value lines) that points
# docker-compose.yml at them.
#   usage: [DOCKER=docker] [BERTH_DEPLOY_CACHE=DIR] build-local.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
docker=${DOCKER:-docker}
export DOCKER_BUILDKIT=0
build() { # tag, then docker build arguments; quiet unless it fails
  local tag=$1 out
  shift
  out=$("$docker" build --network host --force-rm --tag "$tag" "$@" 2>&1) || { echo "$out" | tail -n 40 >&2; echo "build of $tag failed" >&2; exit 1; }
}

base=berth-local/debian:bookworm
if ! "$docker" image inspect "$base" >/dev/null 2>&1; then
  "$docker" import "$("$here/debian-rootfs.sh")" "$base" >/dev/null
fi

node_ctx=$(mktemp -d)
trap 'rm -rf "$node_ctx"' EXIT
node_bin=$(command -v node)
[ "$("$node_bin" -p 'process.versions.node.split(".")[0]')" = 20 ] || { echo "the host's node is not Node.js 20" >&2; exit 1; }
cp "$node_bin" "$node_ctx/node"
cp -r "$(npm root --global)/npm" "$node_ctx/npm"
cp "${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}" "$node_ctx/host-ca-certificates.crt"
cp "$here/node/Dockerfile" "$node_ctx/"
build berth-local/node:20 --build-arg BASE_IMAGE="$base" "$node_ctx"
build berth-local/postgres:15 --build-arg BASE_IMAGE="$base" "$here/postgres"
build berth-local/nats:2 --build-arg BASE_IMAGE="$base" "$here/nats"
build berth-local/s3 --build-arg NODE_IMAGE=berth-local/node:20 "$here/s3"
build berth-local/registry:2 --build-arg BASE_IMAGE="$base" "$here/registry"
build berth:local --build-arg NODE_IMAGE=berth-local/node:20 --build-arg RUNTIME_IMAGE="$base" \
  --file "$repo/Dockerfile" "$repo"

cat <<ENV
BERTH_IMAGE=berth:local
BERTH_POSTGRES_IMAGE=berth-local/postgres:15
BERTH_NATS_IMAGE=berth-local/nats:2
BERTH_S3_IMAGE=berth-local/s3
BERTH_S3_ACCESS_KEY=S3RVER
BERTH_S3_SECRET_KEY=S3RVER
BERTH_REGISTRY_IMAGE=berth-local/registry:2
ENV
