import { lstat, opendir, readdir, readlink, rm } from 'node:fs/promises';
import { posix } from 'node:path';
import { hasErrno, invalidArgument } from '@berth/common/errors';
import type { Logger } from '@berth/common/log';
import { GnuTarSink, type ProgressWatch } from './gnu-tar.js';
import { encodeEntry, TypeFlag } from './tar-header.js';
import { type TarEntry, TarReader } from './tar-reader.js';

/**
 * Applies an OCI layer tar (https://github.com/opencontainers/image-spec/blob/main/layer.md) to a directory.
 *
 * Every member is checked here before GNU tar sees it, against a model of the tree as it will be once
 * the members before it are applied (members seen so far, else the directory on disk):
 * - names must be relative and free of `..` (invalid_argument);
 * - a parent path may go through symlinks only if they stay inside the root when followed as the host
 *   would: absolute targets and targets climbing above the root are refused (invalid_argument);
 * - hard-link targets obey the same rules and must exist in the tree.
 * So nothing is ever created, linked or deleted outside `root`. containerd re-roots such paths instead;
 * refusing them is stricter, and layers produced from filesystem diffs never contain them.
 *
 * Whiteouts: in `overlay` mode (`root` is an overlay upper dir) `.wh.<name>` becomes a 0/0 character device
 * and `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory; in `delete` mode they delete what
 * the lower layers put there. A whiteout never hides what the same layer adds.
 */
export interface ApplyOptions {
  readonly root: string;
  readonly whiteouts: 'overlay' | 'delete';
  /** Lower layers (overlay mode), nearest first: implicit parent directories copy their attributes. */
  readonly parents: readonly string[];
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** Bounds every wait on tar and kills it when the call is given up. */
  readonly watch?: ProgressWatch;
}

type Node =
  | { readonly kind: 'dir'; readonly fresh: boolean }
  | { readonly kind: 'symlink'; readonly target: string }
  | { readonly kind: 'other' }
  | { readonly kind: 'absent' };

const whiteoutPrefix = '.wh.';
const opaqueMarker = '.wh..wh..opq';
const maxSymlinkHops = 40;

const join = (dir: string, name: string): string => (dir === '' ? name : `${dir}/${name}`);
const parentOf = (p: string): string => {
  const i = p.lastIndexOf('/');
  return i === -1 ? '' : p.slice(0, i);
};
const baseOf = (p: string): string => p.slice(p.lastIndexOf('/') + 1);

/**
 * Adds the ancestors of `p` to `set`, deepest first, stopping at one already there: the sets this is used
 * on always hold every ancestor of what they hold.
 */
function addAncestors(set: Set<string>, p: string): void {
  for (let i = p.lastIndexOf('/'); i !== -1; i = p.lastIndexOf('/', i - 1)) {
    const a = p.slice(0, i);
    if (set.has(a)) return;
    set.add(a);
    if (i === 0) return;
  }
}

function ancestorsOf(p: string): string[] {
  const out: string[] = [];
  for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) out.push(p.slice(0, i));
  return out;
}

/** The member name as a clean relative path ('' for the root); refuses absolute names and `..`. */
export function cleanName(name: string): string {
  if (name.startsWith('/')) throw invalidArgument(`invalid layer member ${JSON.stringify(name)}: absolute path`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) {
    throw invalidArgument(`invalid layer member ${JSON.stringify(name)}: path traversal ("..") is not allowed`);
  }
  return parts.join('/');
}

/** The member re-encoded at its resolved path, so tar applies exactly what was checked. */
function encodeMember(entry: TarEntry, path: string, linkname: string): Buffer {
  const pax = new Map<string, Buffer>();
  for (const [k, v] of entry.xattrs) {
    // containerd never sets trusted.* attributes from a layer (they would steer overlayfs itself).
    if (!k.startsWith('trusted.')) pax.set(`SCHILY.xattr.${k}`, v);
  }
  if (entry.paxMtime) pax.set('mtime', entry.paxMtime);
  return encodeEntry({
    name: entry.typeflag === TypeFlag.Dir ? `${path}/` : path,
    typeflag: entry.typeflag === TypeFlag.RegA || entry.typeflag === TypeFlag.Cont ? TypeFlag.Reg : entry.typeflag,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    mtime: Math.floor(entry.mtime),
    devmajor: entry.devmajor,
    devminor: entry.devminor,
    linkname,
    size: entry.size,
    pax,
  });
}

/** What an applied layer implied beyond its members: needed to move it onto other parents later (unpack-ahead). */
export interface AppliedLayer {
  /** Directories the layer implies but does not list; their attributes came from `parents` (else defaults). */
  readonly implicitDirs: readonly string[];
  /** Overlay mode: the layer marks the root itself opaque (set on `root`, which a move does not carry). */
  readonly opaqueRoot: boolean;
  /** Overlay mode: whiteout devices and opaque markers made (none: the tree is the same in delete mode). */
  readonly overlayMarks: number;
}

export async function applyLayer(source: AsyncIterable<Buffer>, opts: ApplyOptions): Promise<AppliedLayer> {
  const root = posix.normalize(opts.root).replace(/\/$/, '');
  const state = new Map<string, Node>();
  /** Every ancestor of a path in `state`: a path whose subtree this layer touched. */
  const touchedAncestors = new Set<string>();
  /** Paths forwarded to the running tar process and their ancestors, not yet known to be on disk. */
  let pending = new Set<string>();
  const opaqueDirs: string[] = [];
  let overlayMarks = 0;
  /** Directories created only because a member lay below them, and not replaced or listed since. */
  const implicitDirs = new Set<string>();
  const dropImplicit = (path: string): void => {
    if (implicitDirs.size === 0) return;
    const prefix = `${path}/`;
    for (const d of implicitDirs) if (d === path || d.startsWith(prefix)) implicitDirs.delete(d);
  };
  // An empty root (a new snapshot's upper dir) holds only what this layer adds: no lookups on disk needed.
  const rootNode: Node = { kind: 'dir', fresh: await isEmptyDir(root) };
  const sink = new GnuTarSink(root, undefined, opts.watch);
  const reader = new TarReader(source);

  const record = (path: string, node: Node): void => {
    state.set(path, node);
    addAncestors(touchedAncestors, path);
  };
  const forget = (path: string): void => {
    const prefix = `${path}/`;
    for (const k of state.keys()) if (k.startsWith(prefix)) state.delete(k);
  };
  const forward = (path: string, raw: Buffer): Promise<void> | undefined => {
    pending.add(path);
    addAncestors(pending, path);
    return sink.push(raw);
  };
  /** Our own change at `path` must not race tar applying members at, above or below it. */
  const settle = async (path: string): Promise<void> => {
    if (
      pending.has(path) ||
      ancestorsOf(path).some((a) => pending.has(a)) ||
      [...pending].some((p) => p.startsWith(`${path}/`))
    ) {
      await sink.finish();
      pending = new Set();
    }
  };

  const onDisk = async (path: string): Promise<Node> => {
    try {
      const st = await lstat(`${root}/${path}`);
      if (st.isDirectory()) return { kind: 'dir', fresh: false };
      if (st.isSymbolicLink()) {
        return { kind: 'symlink', target: await readlink(`${root}/${path}`) };
      }
      return { kind: 'other' };
    } catch (e) {
      if (hasErrno(e, 'ENOENT') || hasErrno(e, 'ENOTDIR')) return { kind: 'absent' };
      throw e;
    }
  };

  /** What `path` is, given that its parent (a real directory) is `parent`. */
  const lookup = async (path: string, parent: Node): Promise<Node> => {
    const known = state.get(path);
    if (known) return known;
    // Below a directory this layer created (or replaced), only members of this layer exist.
    if (parent.kind === 'dir' && parent.fresh) return { kind: 'absent' };
    return onDisk(path);
  };

  /** Attributes for a directory the layer implies but does not list. */
  const implicitDir = async (path: string): Promise<Buffer> => {
    let attrs = { mode: 0o755, uid: 0, gid: 0, mtime: Math.floor(Date.now() / 1000) };
    for (const lower of opts.parents) {
      const st = await lstatInside(lower, path);
      if (st?.isDirectory()) {
        attrs = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000) };
        break;
      }
    }
    return encodeEntry({ name: `${path}/`, typeflag: TypeFlag.Dir, ...attrs });
  };

  /**
   * Resolves a directory path of the tree to its real path (through symlinks that stay inside), creating
   * missing directories when `create`. Throws invalid_argument for anything that would leave the root.
   */
  const resolveDir = async (rel: string, member: string, create: boolean): Promise<{ path: string; node: Node }> => {
    const queue = rel === '' ? [] : rel.split('/');
    const stack: Array<{ path: string; node: Node }> = [{ path: '', node: rootNode }];
    let hops = 0;
    for (let c = queue.shift(); c !== undefined; c = queue.shift()) {
      if (c === '' || c === '.') continue;
      const cur = stack[stack.length - 1] ?? { path: '', node: rootNode };
      if (c === '..') {
        if (stack.length === 1) {
          throw invalidArgument(
            `invalid layer member ${JSON.stringify(member)}: a symlink on its path leads outside the root`,
          );
        }
        stack.pop();
        continue;
      }
      const next = join(cur.path, c);
      const node = await lookup(next, cur.node);
      if (node.kind === 'dir') {
        stack.push({ path: next, node });
      } else if (node.kind === 'symlink') {
        if (++hops > maxSymlinkHops)
          throw invalidArgument(`invalid layer member ${JSON.stringify(member)}: too many levels of symbolic links`);
        if (node.target.startsWith('/')) {
          throw invalidArgument(
            `invalid layer member ${JSON.stringify(member)}: ${next} is a symlink to ${JSON.stringify(node.target)}, outside the root`,
          );
        }
        queue.unshift(...node.target.split('/'));
      } else if (node.kind === 'absent' && create) {
        const created: Node = { kind: 'dir', fresh: true };
        await forward(next, await implicitDir(next));
        implicitDirs.add(next);
        record(next, created);
        stack.push({ path: next, node: created });
      } else {
        throw invalidArgument(
          `invalid layer member ${JSON.stringify(member)}: ${next} ${node.kind === 'absent' ? 'does not exist' : 'is not a directory'}`,
        );
      }
    }
    return stack[stack.length - 1] ?? { path: '', node: rootNode };
  };

  /** Removes `path` (and everything below) before a member replaces it. */
  const removeTree = async (path: string): Promise<void> => {
    await settle(path);
    await rm(`${root}/${path}`, { recursive: true, force: true });
    forget(path);
    dropImplicit(path);
  };

  /** Delete-mode opaque directory: removes what lower layers put in `dir`, keeping this layer's members. */
  const clearLower = async (dir: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(`${root}/${dir}`);
    } catch (e) {
      if (hasErrno(e, 'ENOENT')) return;
      throw e;
    }
    for (const name of names) {
      const child = join(dir, name);
      if (touchedAncestors.has(child)) {
        if (state.get(child)?.kind === 'dir' || !state.has(child)) await clearLower(child);
      } else if (!state.has(child)) {
        await settle(child);
        await rm(`${root}/${child}`, { recursive: true, force: true });
      }
    }
  };

  const whiteout = async (entry: TarEntry, dir: string, base: string): Promise<void> => {
    if (base === opaqueMarker) {
      if (opts.whiteouts === 'overlay') {
        opaqueDirs.push(dir);
        overlayMarks++;
      } else await clearLower(dir);
      return;
    }
    const target = base.slice(whiteoutPrefix.length);
    if (target === '' || target === '.' || target === '..' || target.includes('/')) {
      throw invalidArgument(`invalid whiteout name: ${base}: invalid archive`);
    }
    const path = join(dir, target);
    if (opts.whiteouts === 'overlay') {
      const device = encodeEntry({
        name: path,
        typeflag: TypeFlag.Char,
        mode: 0,
        uid: entry.uid,
        gid: entry.gid,
        mtime: entry.mtime,
        devmajor: 0,
        devminor: 0,
      });
      overlayMarks++;
      await place(path, { kind: 'other' }, device, false, false);
      return;
    }
    // Whiteouts hide lower layers only: what this layer already put there stays.
    if (state.has(path) || touchedAncestors.has(path)) return;
    const node = await lookup(path, state.get(dir) ?? (dir === '' ? rootNode : { kind: 'dir', fresh: false }));
    if (node.kind === 'absent') return;
    await settle(path);
    await rm(`${root}/${path}`, { recursive: true, force: true });
    dropImplicit(path);
    record(path, { kind: 'absent' });
  };

  /** Puts a member at `path` (its parent already resolved): replaces what is there unless both are dirs. */
  const place = async (path: string, node: Node, raw: Buffer, isDir: boolean, hasBody: boolean): Promise<void> => {
    const parent = state.get(parentOf(path)) ?? (parentOf(path) === '' ? rootNode : await onDisk(parentOf(path)));
    const existing = await lookup(path, parent);
    let placed = node;
    if (isDir) {
      placed = { kind: 'dir', fresh: existing.kind !== 'dir' || (existing.kind === 'dir' && existing.fresh) };
      if (existing.kind !== 'dir' && existing.kind !== 'absent') forget(path);
    } else if (existing.kind === 'dir') {
      await removeTree(path);
    }
    // Listed now: its own attributes win (what was below it, if replaced, went with removeTree).
    implicitDirs.delete(path);
    await forward(path, raw);
    if (hasBody) await reader.forwardBody((chunk) => sink.push(chunk));
    record(path, placed);
  };

  try {
    // The layer starts streaming (content read and decompression run off the event loop) while tar starts:
    // forking it blocks this thread for milliseconds, and it then needs a few more to be ready to read.
    const first = reader.next();
    first.catch(() => undefined);
    sink.begin();
    for (let entry = await first; entry; entry = await reader.next()) {
      opts.signal?.throwIfAborted();
      const name = cleanName(entry.name);
      if (name === '') {
        // The root itself: containerd ignores it, so the snapshot root keeps its own attributes.
        await reader.skip();
        continue;
      }
      const base = baseOf(name);
      const dir = (await resolveDir(parentOf(name), entry.name, true)).path;
      const path = join(dir, base);
      if (base.startsWith(whiteoutPrefix)) {
        await reader.skip();
        await whiteout(entry, dir, base);
        continue;
      }
      // tar gets the resolved path: it never has to follow a symlink itself.
      switch (entry.typeflag) {
        case TypeFlag.Dir:
          await place(path, { kind: 'dir', fresh: true }, encodeMember(entry, path, ''), true, false);
          break;
        case TypeFlag.Symlink:
          await place(
            path,
            { kind: 'symlink', target: entry.linkname },
            encodeMember(entry, path, entry.linkname),
            false,
            false,
          );
          break;
        case TypeFlag.Link: {
          const target = cleanName(entry.linkname);
          if (target === '')
            throw invalidArgument(`invalid hard link ${JSON.stringify(entry.name)}: target is the root`);
          const tdir = await resolveDir(parentOf(target), entry.linkname, false);
          const tpath = join(tdir.path, baseOf(target));
          const tnode = await lookup(tpath, tdir.node);
          if (tnode.kind === 'absent' || tnode.kind === 'dir') {
            throw invalidArgument(
              `invalid hard link ${JSON.stringify(entry.name)} -> ${JSON.stringify(entry.linkname)}: ${tnode.kind === 'dir' ? 'target is a directory' : 'target does not exist'}`,
            );
          }
          await place(path, tnode, encodeMember(entry, path, tpath), false, false);
          break;
        }
        case TypeFlag.Reg:
        case TypeFlag.RegA:
        case TypeFlag.Cont:
        case TypeFlag.Char:
        case TypeFlag.Block:
        case TypeFlag.Fifo:
          await place(path, { kind: 'other' }, encodeMember(entry, path, ''), false, true);
          break;
        default:
          throw invalidArgument(
            `unsupported tar member type ${JSON.stringify(entry.typeflag)} for ${JSON.stringify(entry.name)}`,
          );
      }
    }
    await reader.end();
    await sink.finish();
    if (opaqueDirs.length > 0) await markOpaque(root, opaqueDirs);
    return { implicitDirs: [...implicitDirs], opaqueRoot: opaqueDirs.includes(''), overlayMarks };
  } catch (e) {
    await sink.abort();
    await reader.close();
    throw e;
  }
}

/** Sets `trusted.overlay.opaque=y` on directories of an upper dir, keeping their attributes. */
export async function markOpaque(root: string, dirs: readonly string[]): Promise<void> {
  const fixup = new GnuTarSink(root, ['--xattrs-include=trusted.overlay.opaque']);
  for (const dir of dirs) {
    const st = await lstat(dir === '' ? root : `${root}/${dir}`, { bigint: true });
    const seconds = st.mtimeNs / 1_000_000_000n;
    const nanos = st.mtimeNs % 1_000_000_000n;
    await fixup.write(
      encodeEntry({
        name: dir === '' ? './' : `${dir}/`,
        typeflag: TypeFlag.Dir,
        mode: Number(st.mode) & 0o7777,
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtime: Number(seconds),
        pax: new Map([
          ['SCHILY.xattr.trusted.overlay.opaque', Buffer.from('y')],
          ['mtime', Buffer.from(`${seconds}.${String(nanos).padStart(9, '0')}`)],
        ]),
      }),
    );
  }
  await fixup.finish();
}

async function isEmptyDir(dir: string): Promise<boolean> {
  const d = await opendir(dir);
  try {
    return (await d.read()) === null;
  } finally {
    await d.close();
  }
}

/** lstat of `rel` inside `dir`, walking component by component and never through a symlink. */
export async function lstatInside(dir: string, rel: string) {
  let cur = dir;
  const parts = rel.split('/');
  for (let i = 0; i < parts.length; i++) {
    cur = `${cur}/${parts[i] ?? ''}`;
    try {
      const st = await lstat(cur);
      if (i === parts.length - 1) return st;
      if (!st.isDirectory()) return undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}
