import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { invalidArgument } from '../errors.js';
import { MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, mount, SysError, umount } from './mount-sys.js';
import type { Mount } from './types.js';

function run(cmd: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, (err, _out, stderr) => (err ? reject(new Error(stderr.trim() || err.message)) : resolve())),
  );
}

/** mount(8)'s option words that map to mount flags (containerd's table): [clears the flag, flag]. */
const flagOptions: ReadonlyMap<string, readonly [boolean, number]> = new Map([
  ['async', [true, 0x10]],
  ['atime', [true, 0x400]],
  ['bind', [false, MS_BIND]],
  ['defaults', [false, 0]],
  ['dev', [true, 0x4]],
  ['diratime', [true, 0x800]],
  ['dirsync', [false, 0x80]],
  ['exec', [true, 0x8]],
  ['mand', [false, 0x40]],
  ['noatime', [false, 0x400]],
  ['nodev', [false, 0x4]],
  ['nodiratime', [false, 0x800]],
  ['noexec', [false, 0x8]],
  ['nomand', [true, 0x40]],
  ['norelatime', [true, 0x200000]],
  ['nostrictatime', [true, 0x1000000]],
  ['nosuid', [false, 0x2]],
  ['rbind', [false, MS_BIND | MS_REC]],
  ['relatime', [false, 0x200000]],
  ['remount', [false, MS_REMOUNT]],
  ['ro', [false, MS_RDONLY]],
  ['rw', [true, MS_RDONLY]],
  ['strictatime', [false, 0x1000000]],
  ['suid', [true, 0x2]],
  ['sync', [false, 0x10]],
]);

/**
 * Options only mount(8) understands (loop devices, propagation changes, fstab words) and helper-mounted
 * types: such mounts still go through the `mount` binary.
 */
const needsMountBinary = (m: Mount, data: string): boolean =>
  m.type.startsWith('fuse') ||
  data.length >= 4096 ||
  m.options.some((o) =>
    /^(loop|x-|comment=|helper=|(r?(private|shared|slave|unbindable))$|(nofail|auto|noauto|user|users|owner|group|_netdev)$)/.test(
      o,
    ),
  );

async function mountOne(m: Mount, target: string): Promise<void> {
  const isBind = m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind');
  const opts = [...m.options];
  if (m.type === 'bind' && !opts.includes('bind') && !opts.includes('rbind')) opts.push('rbind');
  let flags = 0;
  const data: string[] = [];
  for (const o of opts) {
    const f = flagOptions.get(o);
    if (f === undefined) data.push(o);
    else flags = f[0] ? flags & ~f[1] : flags | f[1];
  }
  if (needsMountBinary(m, data.join(','))) {
    const args = ['-t', isBind ? 'none' : m.type];
    if (opts.length > 0) args.push('-o', opts.join(','));
    args.push(m.source, target);
    await run('mount', args);
    return;
  }
  mount(m.source, target, isBind ? 'none' : m.type, flags, data.join(','));
  // A bind mount ignores MS_RDONLY until it is remounted.
  if ((flags & (MS_BIND | MS_RDONLY)) === (MS_BIND | MS_RDONLY)) {
    try {
      mount('', target, '', flags | MS_REMOUNT, '');
    } catch (e) {
      await unmountAll(target).catch(() => undefined);
      throw e;
    }
  }
}

/**
 * Mounts `mounts` in order on `target` (the bundle's rootfs), the way containerd's `mount.All` does.
 * Bind mounts are given as type `bind` (or `none`) with `bind`/`rbind` among the options.
 */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  const done: string[] = [];
  try {
    for (const m of mounts) {
      if (m.type === '' || m.source === '') throw invalidArgument('rootfs mount needs a type and a source');
      await mountOne(m, target);
      done.push(target);
    }
  } catch (e) {
    for (const t of done.reverse()) await unmountAll(t).catch(() => undefined);
    throw e;
  }
}

/** /proc/self/mountinfo escapes blanks and backslashes in mount points as octal (the kernel's `mangle`). */
export const escapeMountPoint = (s: string): string =>
  s.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);

/**
 * Whether `target` is a mount point in `mountinfo`: its escaped form, searched in the text as the fifth field of
 * a line. unmountAll asks this while an unmount runs; with a hundred containers' mounts in the table, splitting
 * and unescaping every line each time cost more than the unmount's own work in the agent.
 */
export function mountedAt(mountinfo: string, target: string): boolean {
  const field = ` ${escapeMountPoint(target)} `;
  for (let i = mountinfo.indexOf(field); i !== -1; i = mountinfo.indexOf(field, i + 1)) {
    let blanks = 0;
    for (let j = i - 1; j >= 0 && mountinfo[j] !== '\n'; j--) if (mountinfo[j] === ' ') blanks++;
    if (blanks === 3) return true; // mount id, parent id, major:minor, root: then the mount point
  }
  return false;
}

async function isMountPoint(target: string): Promise<boolean> {
  return mountedAt(await readFile('/proc/self/mountinfo', 'utf8'), target);
}

/**
 * Unmounts everything at `target` (recursively, until nothing is mounted there).
 *
 * The kernel takes the mount out of the mount table first; when that drops an overlay's last reference it
 * then syncs the whole upper filesystem (every dirty page on that disk, not just this container's) before
 * umount2 returns. Once the mount has left the table nothing of it is visible or usable any more, so that
 * flush is left to finish on its worker thread instead of holding up the task's Delete.
 */
export async function unmountAll(target: string): Promise<void> {
  for (let i = 0; i < 16; i++) {
    let settled = false;
    const call = umount(target).then(
      () => 'unmounted' as const,
      (e: unknown) => {
        if (e instanceof SysError && (e.code === 'EINVAL' || e.code === 'ENOENT')) return 'none' as const;
        throw e;
      },
    );
    void call.finally(() => (settled = true)).catch(() => undefined);
    const left = (async (): Promise<'left'> => {
      // A stacked mount keeps the mount point in the table: then only the call's end says it is done.
      while (!settled) {
        if (!(await isMountPoint(target))) return 'left';
        await new Promise((r) => setTimeout(r, 2));
      }
      return new Promise<'left'>(() => undefined);
    })();
    const r = await Promise.race([call, left]);
    if (r !== 'unmounted') return;
  }
}
