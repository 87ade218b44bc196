import { chmod, chown, lstat, readdir, rename, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mount } from '@berth/common/mount';
import { overlayUpper } from '@berth/common/mount';
import { lstatInside, markOpaque } from '../archive/apply.js';
import type { Staged } from './unpack-ahead.js';

/** Where a staged layer may go: an overlay upper dir over `lowers` (nearest first), or a bottom layer's dir. */
export interface AdoptTarget {
  readonly dir: string;
  readonly lowers: readonly string[];
  /** A bind mount: the layer is applied with whiteouts as deletions, not overlay marks. */
  readonly bind: boolean;
}

/** The directory an Apply on `mounts` writes into, when a staged tree could be moved there. */
export function adoptTarget(mounts: readonly Mount[]): AdoptTarget | undefined {
  const upper = overlayUpper(mounts);
  if (upper) return { dir: upper.upper, lowers: upper.lowers, bind: false };
  const [m] = mounts;
  if (mounts.length === 1 && m?.type === 'bind' && !m.options.includes('ro'))
    return { dir: m.source, lowers: [], bind: true };
  return undefined;
}

/**
 * Moves a staged layer tree into `target`, leaving what applying the layer there would have left. False,
 * moving nothing, when that cannot be done by renames: the target is not empty, or is on another filesystem,
 * or (a bind mount, whose Apply deletes instead of marking) the tree holds whiteout devices or opaque markers.
 */
export async function adoptStaged(staged: Staged, target: AdoptTarget): Promise<boolean> {
  if (target.bind && staged.overlayMarks > 0) return false;
  const [names, to, from] = await Promise.all([readdir(target.dir), lstat(target.dir), lstat(staged.dir)]);
  if (names.length > 0 || to.dev !== from.dev) return false;
  for (const name of await readdir(staged.dir)) await rename(join(staged.dir, name), join(target.dir, name));
  // An implied directory copies the attributes of the same directory in the nearest lower layer having it.
  for (const dir of staged.implicitDirs) {
    for (const lower of target.lowers) {
      const st = await lstatInside(lower, dir);
      if (!st?.isDirectory()) continue;
      const path = join(target.dir, dir);
      await chown(path, st.uid, st.gid);
      await chmod(path, st.mode & 0o7777);
      // Seconds, as the tar member made for it inline carries.
      const t = Math.floor(st.mtimeMs / 1000);
      await utimes(path, t, t);
      break;
    }
  }
  if (staged.opaqueRoot) await markOpaque(target.dir, ['']);
  return true;
}
