import { constants } from 'node:os';
import koffi from 'koffi';

/**
 * mount(2) and umount2(2) for the agent, through koffi: spawning `mount`/`umount` forks the whole agent
 * process, which on a busy node costs more than the mount itself. umount2 runs on a worker thread: when it
 * drops an overlay's last reference, the kernel syncs the overlay's upper filesystem before the call
 * returns, which can take long and must not stall the event loop.
 */

const libc = koffi.load('libc.so.6');
const mountFn: (source: string, target: string, fstype: string | null, flags: number, data: string | null) => number =
  libc.func('int mount(const char *, const char *, const char *, unsigned long, const char *)');
const umount2Fn = libc.func('int umount2(const char *, int)');

export const MS_RDONLY = 0x1;
export const MS_REMOUNT = 0x20;
export const MS_BIND = 0x1000;
export const MS_REC = 0x4000;

export class SysError extends Error {
  constructor(
    what: string,
    readonly code: string,
  ) {
    super(`${what}: ${code}`);
  }
}

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(constants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

export function mount(source: string, target: string, fstype: string, flags: number, data: string): void {
  if (mountFn(source, target, fstype === '' ? null : fstype, flags, data === '' ? null : data) < 0) {
    throw new SysError(`mount ${source} on ${target}`, errnoName(koffi.errno()));
  }
}

/** umount2(target, 0) on a worker thread; rejects with the errno's name (EINVAL: not a mount point). */
export function umount(target: string): Promise<void> {
  return new Promise((resolve, reject) => {
    umount2Fn.async(target, 0, (err: unknown, r: number) => {
      if (err) reject(err);
      else if (r < 0) reject(new SysError(`unmount ${target}`, errnoName(koffi.errno())));
      else resolve();
    });
  });
}
