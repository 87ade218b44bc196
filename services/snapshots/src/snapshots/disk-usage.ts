import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Usage } from './types.js';

/**
 * lstat calls in flight at once. One at a time, a layer's thousands of files cost a thread-pool round trip
 * each through a busy event loop (Snapshots.Commit of a 4,000-file layer took ~0.5 s); libuv's pool runs
 * several at once.
 */
const concurrency = 32;

/**
 * containerd's `fs.DiskUsage`: allocated blocks (512-byte units) and inodes under `root`, each inode
 * counted once so hard links do not double the size.
 */
export async function diskUsage(root: string, signal?: AbortSignal): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0;
  const queue: string[] = [root];
  const visit = async (path: string): Promise<void> => {
    signal?.throwIfAborted();
    const st = await lstat(path, { bigint: true });
    const key = `${st.dev}:${st.ino}`;
    if (!seen.has(key)) {
      seen.add(key);
      size += Number(st.blocks) * 512;
    }
    if (st.isDirectory()) for (const name of await readdir(path)) queue.push(join(path, name));
  };
  // Each worker takes paths until none is left and none is being listed (a listing may add more).
  let listing = 0;
  let wake: (() => void) | undefined;
  const worker = async (): Promise<void> => {
    for (;;) {
      const path = queue.pop();
      if (path === undefined) {
        if (listing === 0) return;
        await new Promise<void>((r) => {
          const prev = wake;
          wake = () => {
            prev?.();
            r();
          };
        });
        continue;
      }
      listing++;
      try {
        await visit(path);
      } catch (e) {
        // The walk fails with the first error; the other workers stop at their next path.
        queue.length = 0;
        throw e;
      } finally {
        listing--;
        const w = wake;
        wake = undefined;
        w?.();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { size, inodes: seen.size };
}
