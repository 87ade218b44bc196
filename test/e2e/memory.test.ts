import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { startBerthd } from './src/berthd.js';

/**
 * The embedded default's memory (issue 18): berthd on PGlite idled at 814 MB resident (high-water 892 MB)
 * when PGlite's initdb ran in the daemon and its 128 MB buffer pool was zeroed at start, then at ~190 MB
 * (high-water ~280 MB) with 16 MB of buffers. Now ~115 MB idle, ~215–245 MB high-water: Postgres's shared
 * memory is 6 MB, the clients of unused backends are not loaded, and glibc's arenas shrink when idle. The
 * bounds leave room for a loaded CI machine.
 */
const kb = (status: string, key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1]);

describe('berthd on embedded defaults', () => {
  it('idles within 150 MB resident, never above 300 MB on the way', async () => {
    const d = await startBerthd();
    try {
      // The database opens and the task supervisor starts in the background; memory goes back after 5 s idle.
      await new Promise((r) => setTimeout(r, 15_000));
      const status = await readFile(`/proc/${d.child.pid}/status`, 'utf8');
      expect(kb(status, 'VmRSS') / 1024, 'MB resident').toBeLessThan(150);
      expect(kb(status, 'VmHWM') / 1024, 'MB high-water').toBeLessThan(300);
    } finally {
      await d.stop();
    }
  }, 90_000);

  it('loads no client of a backend it does not use: S3, NATS, the ops server, certificates', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-e2e-modules-'));
    const list = join(dir, 'modules');
    const hook = resolve(fileURLToPath(import.meta.url), '../dist/loaded-modules.js');
    const d = await startBerthd({ nodeArgs: ['--import', hook], env: { BERTH_LOADED_MODULES: list } });
    try {
      const loaded = (await readFile(list, 'utf8')).split('\n');
      expect(
        loaded.some((u) => u.includes('/@electric-sql/pglite/')),
        'PGlite seen loading',
      ).toBe(true);
      // Each is megabytes of heap (minio 6 MB, fastify 1.6 MB, node-forge 1.3 MB, NATS 1.1 MB).
      const unused = loaded.filter((u) => /\/node_modules\/(minio|fastify|@nats-io\/[^/]+|node-forge)\//.test(u));
      expect(unused).toEqual([]);
    } finally {
      await d.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
