import { chmod, chown, lstat, readdir, rename, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { lstatInside, markOpaque } from '../archive/apply.js';
import type { Staged } from './unpack-ahead.js';

/**
 * Moves a staged layer tree into `upper`, an overlay upper directory with `lowers` below it (nearest first),
 * leaving what applying the layer there would have left. False, moving nothing, when that cannot be done by
 * renames: `upper` is not empty, or is on another filesystem.
 */
export async function adoptStaged(staged: Staged, upper: string, lowers: readonly string[]): Promise<boolean> {
  const [names, to, from] = await Promise.all([readdir(upper), lstat(upper), lstat(staged.dir)]);
  if (names.length > 0 || to.dev !== from.dev) return false;
  for (const name of await readdir(staged.dir)) await rename(join(staged.dir, name), join(upper, name));
  // An implied directory copies the attributes of the same directory in the nearest lower layer having it.
  for (const dir of staged.implicitDirs) {
    for (const lower of lowers) {
      const st = await lstatInside(lower, dir);
      if (!st?.isDirectory()) continue;
      const path = join(upper, dir);
      await chown(path, st.uid, st.gid);
      await chmod(path, st.mode & 0o7777);
      // Seconds, as the tar member made for it inline carries.
      const t = Math.floor(st.mtimeMs / 1000);
      await utimes(path, t, t);
      break;
    }
  }
  if (staged.opaqueRoot) await markOpaque(upper, ['']);
  return true;
}
