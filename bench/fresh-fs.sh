#!/usr/bin/env bash
# Makes and mounts a new ext4 file system for a benchmark's temporary directories, and prints its mount point:
#   TMPDIR=$(bench/fresh-fs.sh) pnpm --filter @berth/bench run cluster
#   TMPDIR=$(bench/fresh-fs.sh) bench/ab/run-ab.sh
# Why: on a file system that has seen a few hundred thousand files created and removed (a test suite, earlier
# benches), ext4's allocator makes creating 20,000 small files 2-15x slower and erratic (0.55 s on a new file
# system, 3.6-8.5 s on this machine's root after a day of work). The daemon that extracts more files suffers
# more, and the order of a side-by-side run decides which: both daemons must start from the same, clean state.
# Size (default 8G, sparse) with FRESH_FS_SIZE; image and mount point under FRESH_FS_DIR (default /var/tmp).
# Remove with: umount "$mnt" && rm "$mnt.img"
set -euo pipefail
dir=${FRESH_FS_DIR:-/var/tmp}
mnt=$(mktemp -d "$dir/berth-benchfs.XXXXXX")
truncate -s "${FRESH_FS_SIZE:-8G}" "$mnt.img"
mkfs.ext4 -q -F "$mnt.img"
mount -o loop "$mnt.img" "$mnt"
echo "$mnt"
