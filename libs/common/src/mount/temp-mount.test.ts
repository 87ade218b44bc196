import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

// Counts the processes withTempMount starts; everything else of child_process is the real one.
const started = vi.hoisted(() => [] as string[]);
vi.mock('node:child_process', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:child_process')>();
  const execFile = ((...args: Parameters<typeof real.execFile>) => {
    started.push(String(args[0]));
    return (real.execFile as (...a: unknown[]) => unknown)(...args);
  }) as typeof real.execFile;
  return { ...real, default: { ...real, execFile }, execFile };
});

const { withTempMount } = await import('./temp-mount.js');

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  started.length = 0;
});

async function fixture(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-temp-mount-'));
  dirs.push(dir);
  return dir;
}

const mountedUnder = async (root: string): Promise<string[]> =>
  (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(root));

// Mounting needs CAP_SYS_ADMIN, which the diff service has: these run as root, as CI does.
describe('withTempMount', () => {
  it('mounts a bind mount and an overlay without starting a process, and unmounts them', async () => {
    const dir = await fixture();
    for (const d of ['src', 'lower', 'upper', 'work']) await mkdir(join(dir, d));
    await writeFile(join(dir, 'src', 'a'), 'a');
    await writeFile(join(dir, 'lower', 'b'), 'b');
    const tmp = join(dir, 'tmp');

    await withTempMount([{ type: 'bind', source: join(dir, 'src'), options: ['rbind', 'rw'] }], tmp, async (root) => {
      expect(await readdir(root)).toEqual(['a']);
      await writeFile(join(root, 'written'), 'w');
    });
    expect(await readFile(join(dir, 'src', 'written'), 'utf8')).toBe('w');

    const overlay = {
      type: 'overlay',
      source: 'overlay',
      options: [`workdir=${join(dir, 'work')}`, `upperdir=${join(dir, 'upper')}`, `lowerdir=${join(dir, 'lower')}`],
    };
    await withTempMount([overlay], tmp, async (root) => {
      expect(await readdir(root)).toEqual(['b']);
    });

    expect(started).toEqual([]);
    expect(await mountedUnder(tmp)).toEqual([]);
    expect(await readdir(tmp)).toEqual([]);
  });

  it('still uses mount(8) for an overlay whose lower dirs fit in a page only relative to their parent', async () => {
    const dir = await fixture();
    const lowers: string[] = [];
    for (let i = 0; i < 60; i++) {
      const l = join(dir, 'layers', `${'x'.repeat(60)}-${i}`);
      await mkdir(l, { recursive: true });
      lowers.push(l);
    }
    await writeFile(join(lowers[0] ?? '', 'top'), 't');
    const tmp = join(dir, 'tmp');
    await withTempMount(
      [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${lowers.join(':')}`] }],
      tmp,
      async (root) => {
        expect(await readdir(root)).toEqual(['top']);
      },
    );
    expect(started).toEqual(['mount']);
    expect(await mountedUnder(tmp)).toEqual([]);
  });
});
