#!/usr/bin/env bash
# Sets Berth up on this machine, runs berthd on its embedded defaults (PGlite, in-process events, blobs and
# snapshots on local disk) and drives it with the real containerd `ctr` client. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh >/dev/null

demo=${BERTH_DEMO_DIR:-/tmp/berth-demo}
sock="$demo/berth.sock"
rm -rf "$demo" && mkdir -p "$demo"
node --import ./apps/berthd/dist/instrument.js apps/berthd/dist/main.js --root "$demo/root" --state "$demo/state" --address "$sock" --log-level warn \
  2>"$demo/berthd.log" &
berthd=$!
trap 'kill -TERM $berthd 2>/dev/null; wait $berthd 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done

run() { echo "+ ctr $*"; ctr --address "$sock" "$@"; echo; }
run version
run plugins ls
run namespaces create demo team=platform
run namespaces ls
run namespaces label demo team=runtime
run namespaces ls
run namespaces rm demo
echo "berthd log: $demo/berthd.log"
