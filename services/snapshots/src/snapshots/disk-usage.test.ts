import { link, lstat, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diskUsage } from './disk-usage.js';

describe('diskUsage', () => {
  let root: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'disk-usage-'));
    for (let d = 0; d < 5; d++) {
      const dir = join(root, `d${d}`, 'sub', 'deeper');
      await mkdir(dir, { recursive: true });
      for (let f = 0; f < 40; f++) await writeFile(join(dir, `f${f}`), Buffer.alloc(f * 300, 1));
    }
    await link(join(root, 'd0', 'sub', 'deeper', 'f39'), join(root, 'd1', 'hardlink'));
    await symlink('d0/sub', join(root, 'link'));
  });
  afterAll(async () => rm(root, { recursive: true, force: true }));

  it('counts every inode once and sums its allocated blocks, as a plain walk does', async () => {
    const seen = new Map<string, number>();
    const walk = async (p: string): Promise<void> => {
      const st = await lstat(p, { bigint: true });
      seen.set(`${st.dev}:${st.ino}`, Number(st.blocks) * 512);
      if (st.isDirectory()) for (const n of await readdir(p)) await walk(join(p, n));
    };
    await walk(root);
    const usage = await diskUsage(root);
    // root, 5 × (d, sub, deeper), 200 files, the symlink; the hard link is not a new inode.
    expect(usage.inodes).toBe(1 + 15 + 200 + 1);
    expect(usage.inodes).toBe(seen.size);
    expect(usage.size).toBe([...seen.values()].reduce((a, b) => a + b, 0));
  });

  it('lets other work run while it walks a large tree', async () => {
    const big = await mkdtemp(join(tmpdir(), 'disk-usage-big-'));
    for (let d = 0; d < 20; d++) {
      await mkdir(join(big, `d${d}`), { recursive: true });
      await Promise.all(Array.from({ length: 150 }, (_, f) => writeFile(join(big, `d${d}`, `f${f}`), '')));
    }
    let turns = 0;
    const timer = setInterval(() => turns++, 0);
    const started = performance.now();
    const usage = await diskUsage(big);
    const took = performance.now() - started;
    clearInterval(timer);
    await rm(big, { recursive: true, force: true });
    expect(usage.inodes).toBe(1 + 20 + 3000);
    // A walk longer than a slice gave the event loop back at least once.
    if (took > 10) expect(turns).toBeGreaterThan(0);
  });

  it('fails when the root is missing, and stops on an aborted signal', async () => {
    await expect(diskUsage(join(root, 'absent'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(diskUsage(root, AbortSignal.abort())).rejects.toThrow();
  });
});
