import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mountAll, mountedAt, unmountAll } from './syscall-mount.js';

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

describe('mountedAt', () => {
  const info = [
    '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
    '40 22 0:33 / /run/berth/a\\040b rw shared:2 - tmpfs tmpfs rw',
    '41 22 0:34 /run/x /run/y rw - overlay overlay rw,lowerdir=/l',
    '42 22 0:35 / /run/x/rootfs rw - overlay overlay rw',
    '43 22 0:36 / /run/back\\134slash rw - tmpfs tmpfs rw',
  ].join('\n');

  it('finds a mount point by its unescaped path, as the fifth field of a line only', () => {
    expect(mountedAt(info, '/')).toBe(true);
    expect(mountedAt(info, '/run/berth/a b')).toBe(true);
    expect(mountedAt(info, '/run/back\\slash')).toBe(true);
    expect(mountedAt(info, '/run/x/rootfs')).toBe(true);
    expect(mountedAt(info, '/run/y')).toBe(true);
    // A root field, a prefix, an escaped form taken literally: not mount points.
    expect(mountedAt(info, '/run/x')).toBe(false);
    expect(mountedAt(info, '/run/x/root')).toBe(false);
    expect(mountedAt(info, '/run/berth/a\\040b')).toBe(false);
    expect(mountedAt('', '/')).toBe(false);
  });
});

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
