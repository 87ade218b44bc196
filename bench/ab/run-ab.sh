#!/usr/bin/env bash
# Runs the shared harness's ab.sh (../shared/bench/ab.sh: containerd and berthd back to back in each
# repetition) against berthd on its embedded defaults: a private registry with the harness's images, berthd
# started from this checkout (build it first), both stopped by PID at the end.
#   bench/ab/run-ab.sh [REPS]      (HARNESS=path to the shared bench folder, default ../shared/bench)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
harness=${HARNESS:-$repo/../shared/bench}
export REGISTRY_ADDR=${REGISTRY_ADDR:-127.0.0.1:5055}
. "$harness/lib.sh"
work=$(mktemp -d -t berth-ab.XXXXXX)
berthd=''
cleanup() {
  [ -n "$berthd" ] && kill -TERM "$berthd" 2>/dev/null && wait "$berthd" 2>/dev/null || true
  stop_registry >/dev/null 2>&1 || true
  umount -R "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
start_registry "$work/registry" >/dev/null
"$harness/images.sh" "$work/images" >/dev/null
sock=$work/state/berth.sock
node --max-semi-space-size=2 --initial-old-space-size=96 --import "$repo/apps/berthd/dist/instrument.js" "$repo/apps/berthd/dist/main.js" \
  --root "$work/root" --state "$work/state" --address "$sock" --log-level warn 2>"$work/berthd.log" &
berthd=$!
for _ in $(seq 1 600); do ctr --address "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$harness/ab.sh" "$sock" "${1:-5}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
