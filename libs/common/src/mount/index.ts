/**
 * @berth/common/mount: containerd's `core/mount` for Berth — the one Mount type and the code that mounts it.
 *
 * Two implementations stay, on purpose, behind the same `Mount` values:
 * - `mountAll`/`unmountAll` (tasks' bundle rootfs) call mount(2)/umount2(2) through koffi: spawning
 *   `mount` forks the whole agent process, which on a busy node costs more than the mount itself, and
 *   umount2 runs on a worker thread so an overlay's final sync never stalls the event loop.
 * - `withTempMount` (diff's temporary mounts) runs mount(8)/umount(8): an overlay with many lower dirs only
 *   fits in one page relative to a working directory (`compactOverlayOptions`), and the working directory is
 *   per process in Node, so only a child process can have its own; a mount still held when the call ends is
 *   detached lazily (`umount --lazy`).
 * Merging them would change what each service does at its edges (process forks, option handling, failure
 * cleanup), so they share the type and this module, not the code.
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
