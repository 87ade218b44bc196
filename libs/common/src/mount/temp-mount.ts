import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rmdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import { hasErrno, invalidArgument } from '../errors.js';
import { mountAll, unmountAll } from './syscall-mount.js';
import type { Mount } from './types.js';

const run = promisify(execFile);

/** mount(2) takes the option string in one page; containerd leaves 512 bytes of slack too. */
const pageSize = 4096;

/**
 * An overlay with an upper dir can be written directly (as containerd's applier does): the upper dir
 * and the lower dirs, nearest first. Undefined for anything else.
 */
export function overlayUpper(mounts: readonly Mount[]): { upper: string; lowers: string[] } | undefined {
  const [m] = mounts;
  if (mounts.length !== 1 || !m || m.type !== 'overlay') return undefined;
  const upper = m.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length);
  if (!upper) return undefined;
  const lower = m.options.find((o) => o.startsWith('lowerdir='))?.slice('lowerdir='.length);
  return { upper, lowers: lower ? lower.split(':') : [] };
}

/**
 * The overlay options made short enough for one page: lower dirs relative to their longest common parent,
 * which becomes the working directory of the mount call (the kernel resolves them against it).
 */
export function compactOverlayOptions(options: readonly string[]): { cwd: string | undefined; options: string[] } {
  if (options.join(',').length < pageSize - 512) return { cwd: undefined, options: [...options] };
  const lowerOpt = options.find((o) => o.startsWith('lowerdir='));
  if (!lowerOpt) return { cwd: undefined, options: [...options] };
  const lowers = lowerOpt.slice('lowerdir='.length).split(':');
  let common = posix.dirname(lowers[0] ?? '/');
  for (const l of lowers) while (common !== '/' && !l.startsWith(`${common}/`)) common = posix.dirname(common);
  const rel = lowers.map((l) => posix.relative(common, l));
  const out = options.map((o) => (o === lowerOpt ? `lowerdir=${rel.join(':')}` : o));
  return { cwd: common, options: out };
}

/**
 * Mounts `m` on `target`: through mount(2) (see syscall-mount.ts) when its options fit in one page as they are,
 * else with mount(8) from the directory its overlay lower dirs are relative to. Forking `mount` from a daemon
 * with a few hundred MB resident blocks its event loop for ~10 ms, and mount(8) itself took ~15–30 ms more to
 * start before the mount(2) it makes: together most of the time a small layer's Apply spent outside tar.
 */
async function mountOne(m: Mount, target: string): Promise<void> {
  if (m.type === 'bind') {
    const recursive = m.options.includes('rbind');
    const rest = m.options.filter((o) => o !== 'bind' && o !== 'rbind');
    await mountAll([{ type: 'bind', source: m.source, options: [recursive ? 'rbind' : 'bind', ...rest] }], target);
    return;
  }
  if (m.type === 'overlay') {
    const { cwd, options } = compactOverlayOptions(m.options);
    if (cwd === undefined) {
      await mountAll([{ type: 'overlay', source: m.source || 'overlay', options }], target);
      return;
    }
    await run('mount', ['-t', 'overlay', m.source || 'overlay', target, '-o', options.join(',')], { cwd });
    return;
  }
  throw invalidArgument(`unsupported mount type ${JSON.stringify(m.type)}`);
}

/** Mounts `mounts` on a fresh directory under `tmpRoot`, runs `fn` on it, and always unmounts. */
export async function withTempMount<T>(
  mounts: readonly Mount[],
  tmpRoot: string,
  fn: (dir: string) => Promise<T>,
): Promise<T> {
  if (mounts.length === 0) throw invalidArgument('no mounts given');
  await mkdir(tmpRoot, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(tmpRoot, 'mnt-'));
  let mounted = 0;
  try {
    for (const m of mounts) {
      await mountOne(m, dir);
      mounted++;
    }
    return await fn(dir);
  } finally {
    for (; mounted > 0; mounted--) await unmount(dir);
    await rmdir(dir);
  }
}

/**
 * Unmounts `dir` and everything below it, through umount2(2). Should something still hold it (a process of a
 * call given up a moment ago), umount(8) detaches it lazily: it leaves the tree at once and goes when the
 * last user does.
 */
async function unmount(dir: string): Promise<void> {
  try {
    await unmountAll(dir);
  } catch {
    await run('umount', ['--recursive', '--lazy', dir]);
  }
}

/**
 * `mounts` made read-only for looking at (containerd's readonly temp mount): an overlay's upper dir becomes
 * its topmost lower dir (so no work dir is touched), anything else gains `ro`.
 */
export function readonlyMounts(mounts: readonly Mount[]): Mount[] {
  return mounts.map((m) => {
    const upper = m.options.find((o) => o.startsWith('upperdir='));
    if (m.type === 'overlay' && upper) {
      const lower = m.options.find((o) => o.startsWith('lowerdir='));
      const lowers = [upper.slice('upperdir='.length), ...(lower ? lower.slice('lowerdir='.length).split(':') : [])];
      // overlayfs wants two lower dirs when it has no upper one.
      if (lowers.length === 1) return { type: 'bind', source: lowers[0] ?? '', options: ['rbind', 'ro'] };
      const rest = m.options.filter(
        (o) => !o.startsWith('upperdir=') && !o.startsWith('workdir=') && !o.startsWith('lowerdir=') && o !== 'rw',
      );
      return { ...m, options: [...rest, `lowerdir=${lowers.join(':')}`, 'ro'] };
    }
    return m.options.includes('ro') ? m : { ...m, options: [...m.options.filter((o) => o !== 'rw'), 'ro'] };
  });
}

/**
 * Removes the temporary mount points an earlier process left under `tmpRoot` (it was killed mid-call):
 * unmounted and deleted. Only for startup: `tmpRoot` belongs to this node's diff service alone.
 */
export async function removeStaleMounts(tmpRoot: string): Promise<string[]> {
  let names: string[];
  try {
    names = (await readdir(tmpRoot)).filter((n) => n.startsWith('mnt-'));
  } catch (e) {
    if (hasErrno(e, 'ENOENT')) return [];
    throw e;
  }
  if (names.length === 0) return [];
  const mounted = new Set(
    (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((line) => line.split(' ')[4] ?? ''),
  );
  const removed: string[] = [];
  for (const name of names) {
    const dir = join(tmpRoot, name);
    if (mounted.has(dir)) await run('umount', ['--recursive', '--lazy', dir]);
    await rmdir(dir);
    removed.push(dir);
  }
  return removed;
}
