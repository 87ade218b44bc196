/**
 * @berth/common/mount: containerd's `core/mount` for Berth — the one Mount type and the code that mounts it.
 *
 * Mounts are made with mount(2)/umount2(2) through koffi (`syscall-mount.ts`): spawning `mount` forks the
 * whole process, which in a daemon with a few hundred MB resident blocks its event loop for ~10 ms, and
 * mount(8) then takes longer to start than the mount itself; umount2 runs on a worker thread so an overlay's
 * final sync never stalls the event loop.
 * - `mountAll`/`unmountAll`: tasks' bundle rootfs.
 * - `withTempMount`: diff's temporary mounts, on the same calls. Only an overlay whose options do not fit in
 *   one page still goes through mount(8): its lower dirs fit only relative to a working directory
 *   (`compactOverlayOptions`), and the working directory is per process in Node, so only a child process can
 *   have its own. A temporary mount still held when the call ends is detached lazily (`umount --lazy`).
 */
export { mountAll, unmountAll } from './syscall-mount.js';
export {
  compactOverlayOptions,
  overlayUpper,
  readonlyMounts,
  removeStaleMounts,
  withTempMount,
} from './temp-mount.js';
export type { Mount } from './types.js';
