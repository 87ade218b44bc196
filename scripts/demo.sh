#!/usr/bin/env bash
# Sets Berth up on this machine, runs berthd on its embedded defaults (PGlite, in-process events, blobs and
# snapshots on local disk), builds a small busybox image locally, imports it and runs a container, all
# driven by the real containerd `ctr` client. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh >/dev/null

demo=${BERTH_DEMO_DIR:-/tmp/berth-demo}
sock="$demo/berth.sock"
rm -rf "$demo" && mkdir -p "$demo"

echo "== building a busybox image (umoci + skopeo, from Debian's busybox-static)"
img="$demo/image"
umoci init --layout "$img/oci" >/dev/null
umoci new --image "$img/oci:busybox" >/dev/null
umoci unpack --image "$img/oci:busybox" "$img/bundle" >/dev/null
mkdir -p "$img/bundle/rootfs/bin"
cp /bin/busybox "$img/bundle/rootfs/bin/busybox"
for applet in sh echo cat ls sleep true uname; do ln -sf busybox "$img/bundle/rootfs/bin/$applet"; done
umoci repack --image "$img/oci:busybox" "$img/bundle" >/dev/null
umoci config --image "$img/oci:busybox" --config.cmd /bin/sh --config.env PATH=/bin >/dev/null
skopeo copy -q "oci:$img/oci:busybox" "oci-archive:$demo/busybox.tar:docker.io/library/busybox:demo"

echo "== starting berthd on embedded defaults"
node --max-semi-space-size=2 --initial-old-space-size=96 --import ./apps/berthd/dist/instrument.js apps/berthd/dist/main.js \
  --root "$demo/root" --state "$demo/state" --address "$sock" --log-level warn 2>"$demo/berthd.log" &
berthd=$!
trap 'kill -TERM $berthd 2>/dev/null; wait $berthd 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.1; done

run() { echo "+ ctr $*"; ctr --address "$sock" "$@"; echo; }
run version
run plugins ls
run images import "$demo/busybox.tar"
run images ls
run snapshots ls
run run --rm docker.io/library/busybox:demo hello echo "hello from a container run by Berth"
run run --rm docker.io/library/busybox:demo uname uname -a
echo "berthd log: $demo/berthd.log"
