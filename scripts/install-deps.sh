#!/usr/bin/env bash
# Installs everything Berth and its tests need on a fresh Debian 12 machine (run as root), starts the
# local Postgres and NATS servers when they are not running, then installs and builds the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need_node_major=20
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt "$need_node_major" ]; then
  echo "install-deps: Node.js >= $need_node_major is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

apt_packages=(
  runc containerd                       # the runtime, and the real ctr client the e2e tests drive
  golang-github-containerd-containerd-dev  # containerd 1.6 reference protos (wire-compatibility test)
  protobuf-compiler libprotobuf-dev     # protoc --encode/--decode in the wire tests
  docker-registry skopeo umoci busybox-static  # local OCI registry and test images
  postgresql nats-server                # the real servers of cluster mode and integration tests
  tar zstd gzip iproute2 python3-hpack
  docker.io docker-compose debootstrap systemd python3  # the deploy tests: a private Docker engine, images from debootstrap, systemd-analyze
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Postgres and NATS as this machine kind runs them (see the env notes); tests use them at their standard ports.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.1; done
fi

if ! command -v pnpm >/dev/null || [ "$(pnpm --version)" != "12.21.0" ]; then
  npm install -g --silent pnpm@12.21.0
fi
# pnpm does not read nodedir from npmrc; native addons build against the local Node headers.
export npm_config_nodedir="${npm_config_nodedir:-$(dirname "$(dirname "$(command -v node)")")}"
pnpm install --frozen-lockfile
pnpm build
