import { spawn } from 'node:child_process';
import { chmod, lchown, lstat, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { hasErrno } from '@berth/common/errors';
import { spreadSubdirectories } from '@berth/common/spread-dirs';
import { Kind, type Mount } from './types.js';

/** What a driver needs to know about a snapshot to lay it out and mount it. */
export interface SnapshotLayout {
  readonly id: number;
  readonly kind: Kind;
  /** Ids of the committed ancestors, nearest first. */
  readonly parentIds: readonly number[];
}

/**
 * The on-disk half of a snapshotter: directories named by the snapshot's short numeric id under
 * `<root>/<snapshotter>/`, and the mounts that expose them. Short ids keep overlay's lowerdir option small
 * (the mount data is limited to one page), as containerd's overlay does.
 */
export interface Driver {
  readonly name: string;
  /** The directory that holds this snapshotter's snapshot directories. */
  readonly dir: string;
  /** Creates the directory of a new snapshot under a temporary name; the caller renames it to `path(id)`. */
  stage(kind: Kind, parentIds: readonly number[]): Promise<string>;
  path(id: number): string;
  /** The directory whose disk usage is the snapshot's own (its changes). */
  usagePath(id: number): string;
  mounts(s: SnapshotLayout): Mount[];
}

/**
 * A driver's directory, made if it is missing, marked so that each snapshot's tree starts in a block group
 * of its own (ext4; `spreadSubdirectories`): an unpack right after a removal does not scan the inodes it freed.
 */
export async function prepareDriverDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  spreadSubdirectories(dir);
}

/** A new, empty directory under `dir` (made first if it is missing): where a snapshot is laid out. */
async function stageDir(dir: string): Promise<string> {
  try {
    return await mkdtemp(join(dir, 'new-'));
  } catch (e) {
    if (!hasErrno(e, 'ENOENT')) throw e;
    await prepareDriverDir(dir);
    return mkdtemp(join(dir, 'new-'));
  }
}

/** containerd's `overlayfs` snapshotter layout: `<id>/fs` (upper or plain dir) and `<id>/work`. */
export function overlayDriver(root: string, opts: { indexOff: boolean }): Driver {
  const dir = join(root, 'overlayfs');
  const fsPath = (id: number): string => join(dir, String(id), 'fs');
  return {
    name: 'overlayfs',
    dir,
    path: (id) => join(dir, String(id)),
    usagePath: fsPath,
    async stage(kind, parentIds) {
      const td = await stageDir(dir);
      try {
        await mkdir(join(td, 'fs'));
        await chmod(join(td, 'fs'), 0o755);
        if (kind === Kind.Active) {
          await mkdir(join(td, 'work'));
          await chmod(join(td, 'work'), 0o711);
        }
        const nearest = parentIds[0];
        if (nearest !== undefined) {
          // The upper dir is the merged root's inode: it must carry the parent root's owner.
          const st = await lstat(fsPath(nearest));
          await lchown(join(td, 'fs'), st.uid, st.gid);
        }
        return td;
      } catch (e) {
        await rm(td, { recursive: true, force: true });
        throw e;
      }
    },
    mounts(s) {
      if (s.parentIds.length === 0) {
        return [{ type: 'bind', source: fsPath(s.id), options: [s.kind === Kind.View ? 'ro' : 'rw', 'rbind'] }];
      }
      const options: string[] = opts.indexOff ? ['index=off'] : [];
      if (s.kind === Kind.Active) {
        options.push(`workdir=${join(dir, String(s.id), 'work')}`, `upperdir=${fsPath(s.id)}`);
      } else if (s.parentIds.length === 1) {
        // A read-only overlay needs two lower layers; one parent is simply its directory, read-only.
        return [{ type: 'bind', source: fsPath(s.parentIds[0] ?? s.id), options: ['ro', 'rbind'] }];
      }
      options.push(`lowerdir=${s.parentIds.map(fsPath).join(':')}`);
      return [{ type: 'overlay', source: 'overlay', options }];
    },
  };
}

/** containerd's `native` snapshotter: every snapshot is a full copy of its parent, bind-mounted. */
export function nativeDriver(root: string): Driver {
  const dir = join(root, 'native');
  const path = (id: number): string => join(dir, String(id));
  return {
    name: 'native',
    dir,
    path,
    usagePath: path,
    async stage(_kind, parentIds) {
      const td = await stageDir(dir);
      try {
        await chmod(td, 0o755);
        const nearest = parentIds[0];
        if (nearest !== undefined) await copyTree(path(nearest), td);
        return td;
      } catch (e) {
        await rm(td, { recursive: true, force: true });
        throw e;
      }
    },
    mounts(s) {
      const nearest = s.parentIds[0];
      const source = s.kind === Kind.Active || nearest === undefined ? path(s.id) : path(nearest);
      return [{ type: 'bind', source, options: ['rbind', s.kind === Kind.View ? 'ro' : 'rw'] }];
    },
  };
}

/**
 * Copies a directory tree keeping owners, modes, times, hard links, devices and xattrs. GNU cp does all of
 * that natively (and reflinks where the filesystem can), which Node's fs cannot.
 */
function copyTree(from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const cp = spawn('cp', ['-a', '--reflink=auto', '--', `${from}/.`, `${to}/`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    cp.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    cp.once('error', reject);
    cp.once('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`copying parent snapshot failed: ${stderr.trim()}`)),
    );
  });
}

/** Whether the kernel's overlay module knows `index=` (containerd passes index=off when it does). */
export async function overlaySupportsIndex(): Promise<boolean> {
  try {
    await lstat('/sys/module/overlay/parameters/index');
    return true;
  } catch {
    return false;
  }
}
