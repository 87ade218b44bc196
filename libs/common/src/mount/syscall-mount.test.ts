import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mountAll, unmountAll } from './syscall-mount.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) {
    await unmountAll(join(d, 'target'));
    await rm(d, { recursive: true, force: true });
  }
});

async function fixture(): Promise<{ dir: string; target: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-mount-'));
  dirs.push(dir);
  const target = join(dir, 'target');
  await mkdir(target);
  return { dir, target };
}

async function mountsAt(target: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[4] === target)
    .map((f) => f[5] ?? '');
}

// Mounting needs CAP_SYS_ADMIN, which the tasks agent has (it runs runc): these run as root, as CI does.
describe('rootfs mounts', () => {
  it('mounts an overlay with its data options and unmounts it', async () => {
    const { dir, target } = await fixture();
    for (const d of ['lower', 'upper', 'work']) await mkdir(join(dir, d));
    await writeFile(join(dir, 'lower', 'f'), 'lower');
    await mountAll(
      [
        {
          type: 'overlay',
          source: 'overlay',
          options: [
            'index=off',
            `workdir=${join(dir, 'work')}`,
            `upperdir=${join(dir, 'upper')}`,
            `lowerdir=${join(dir, 'lower')}`,
          ],
        },
      ],
      target,
    );
    expect(await mountsAt(target)).toHaveLength(1);
    expect(await readFile(join(target, 'f'), 'utf8')).toBe('lower');
    await writeFile(join(target, 'g'), 'upper');
    await unmountAll(target);
    expect(await mountsAt(target)).toEqual([]);
    expect(await readFile(join(dir, 'upper', 'g'), 'utf8')).toBe('upper');
  });

  it('makes a read-only bind mount read-only (bind ignores ro until remounted)', async () => {
    const { dir, target } = await fixture();
    await mkdir(join(dir, 'src'));
    await mountAll([{ type: 'bind', source: join(dir, 'src'), options: ['rbind', 'ro'] }], target);
    const [opts] = await mountsAt(target);
    expect(opts?.split(',')).toContain('ro');
    await expect(writeFile(join(target, 'x'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
  });

  it('unmounts stacked mounts one after another, and is a no-op when nothing is mounted', async () => {
    const { target } = await fixture();
    await mountAll(
      [
        { type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] },
        { type: 'tmpfs', source: 'tmpfs', options: ['size=1m', 'nosuid'] },
      ],
      target,
    );
    expect(await mountsAt(target)).toHaveLength(2);
    await unmountAll(target);
    expect(await mountsAt(target)).toEqual([]);
    await unmountAll(target);
    await unmountAll(join(target, 'missing'));
  });

  it('reports a mount the kernel refuses, leaving nothing mounted', async () => {
    const { dir, target } = await fixture();
    await expect(
      mountAll(
        [
          { type: 'tmpfs', source: 'tmpfs', options: [] },
          { type: 'overlay', source: 'overlay', options: [`lowerdir=${join(dir, 'nope')}`] },
        ],
        target,
      ),
    ).rejects.toThrow(/mount overlay on .*: ENOENT/);
    expect(await mountsAt(target)).toEqual([]);
  });
});
