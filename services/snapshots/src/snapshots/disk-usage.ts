import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Usage } from './types.js';

/** The longest the walk keeps the event loop before letting other work run. */
const sliceMs = 2;
/** Entries between two looks at the clock. */
const checkEvery = 32;

/**
 * containerd's `fs.DiskUsage`: allocated blocks (512-byte units) and inodes under `root`, each inode
 * counted once so hard links do not double the size.
 *
 * The tree is one a layer was just applied to or a container just wrote: its inodes are in memory, where a
 * synchronous lstat costs a few µs, and an asynchronous one ~25 µs more of promise and thread-pool round
 * trip on the event loop. So the walk makes synchronous calls in slices of at most ~2 ms, yielding between
 * them, rather than one asynchronous call per entry (Snapshots.Commit of busybox's ~280 entries took 12–20
 * ms that way, 4–9 ms this way, on a loaded 2-core machine).
 */
export async function diskUsage(root: string, signal?: AbortSignal): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0;
  const queue: string[] = [root];
  let sliceStart = performance.now();
  for (let n = 1; ; n++) {
    const path = queue.pop();
    if (path === undefined) break;
    if (n % checkEvery === 0 && performance.now() - sliceStart > sliceMs) {
      await nextTurn();
      sliceStart = performance.now();
    }
    signal?.throwIfAborted();
    const st = lstatSync(path, { bigint: true });
    const key = `${st.dev}:${st.ino}`;
    if (!seen.has(key)) {
      seen.add(key);
      size += Number(st.blocks) * 512;
    }
    if (st.isDirectory()) for (const name of readdirSync(path)) queue.push(join(path, name));
  }
  return { size, inodes: seen.size };
}
