/**
 * Layer contents for test images: what a layer holds (entries, OCI whiteouts), its tar stream, and the
 * file tree a correct unpack of the layers must produce — the oracle pull tests compare a mounted rootfs to.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pack } from 'tar-stream';

interface Owned {
  /** Permission bits, including setuid/setgid/sticky. */
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  /** Seconds since the epoch. Default {@link defaultMtime}. */
  readonly mtime?: number;
}

/** One tar entry of a layer. Paths are relative (`usr/bin/x`), without `./` or a trailing slash. */
export type LayerEntry =
  | ({ readonly kind: 'dir'; readonly path: string } & Owned)
  | ({ readonly kind: 'file'; readonly path: string; readonly data: Buffer | string } & Owned)
  | ({ readonly kind: 'symlink'; readonly path: string; readonly target: string } & Owned)
  /** A hard link to `target`, a file added earlier in the same layer. */
  | { readonly kind: 'hardlink'; readonly path: string; readonly target: string }
  /** `<dir>/.wh.<name>`: deletes `path` (and below) from the lower layers. */
  | { readonly kind: 'whiteout'; readonly path: string }
  /** `<path>/.wh..wh..opq`: hides everything the lower layers have below directory `path`. */
  | { readonly kind: 'opaque'; readonly path: string };

/** 2024-01-01T00:00:00Z: fixed, so the same spec always gives the same digests. */
export const defaultMtime = 1_704_067_200;

/** A node of the expected root filesystem. */
export type ExpectedNode =
  | { readonly kind: 'dir'; readonly mode: number; readonly uid: number; readonly gid: number }
  | {
      readonly kind: 'file';
      readonly mode: number;
      readonly uid: number;
      readonly gid: number;
      readonly mtime: number;
      readonly size: number;
      readonly sha256: string;
      /** Paths sharing a link group must be one inode. */
      readonly linkGroup: string;
    }
  | {
      readonly kind: 'symlink';
      readonly target: string;
      readonly uid: number;
      readonly gid: number;
      readonly mtime: number;
    };

/** Path (relative, no leading slash) → node, for everything below the root. */
export type ExpectedTree = ReadonlyMap<string, ExpectedNode>;

const dirOf = (p: string): string => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const baseOf = (p: string): string => p.slice(p.lastIndexOf('/') + 1);
const below = (p: string, q: string): boolean => q.startsWith(`${p}/`);

/**
 * Adds the parent directories an entry list needs but neither it nor `lower` has (0755 root), in front of
 * their first child, so every layer is a well-formed tar on its own.
 */
export function withParents(entries: readonly LayerEntry[], lower: ExpectedTree = new Map()): LayerEntry[] {
  const have = new Set<string>([...lower].filter(([, n]) => n.kind === 'dir').map(([p]) => p));
  const out: LayerEntry[] = [];
  for (const e of entries) {
    const parents: string[] = [];
    for (let d = dirOf(e.path); d !== '' && !have.has(d); d = dirOf(d)) parents.unshift(d);
    for (const d of parents) {
      out.push({ kind: 'dir', path: d, mode: 0o755 });
      have.add(d);
    }
    if (e.kind === 'dir' || e.kind === 'opaque') have.add(e.path);
    out.push(e);
  }
  return out;
}

/** The uncompressed tar stream of a layer (USTAR, PAX for long names), in entry order. */
export async function layerTar(entries: readonly LayerEntry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    p.on('data', (c: unknown) => void chunks.push(c as Buffer));
    p.on('end', resolve);
    p.on('error', reject);
  });
  const add = (header: Parameters<typeof p.entry>[0], data?: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      p.entry(header, data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  const common = (e: Owned): { mode: number; uid: number; gid: number; mtime: Date } => ({
    mode: e.mode ?? 0o644,
    uid: e.uid ?? 0,
    gid: e.gid ?? 0,
    mtime: new Date((e.mtime ?? defaultMtime) * 1000),
  });
  // Hard-link headers carry their target's metadata, as GNU tar writes them: extractors chown/chmod the
  // link path, which is the shared inode.
  const files = new Map<string, Owned>();
  for (const e of entries) {
    switch (e.kind) {
      case 'dir':
        await add({ name: `${e.path}/`, type: 'directory', ...common({ mode: 0o755, ...e }) });
        break;
      case 'file': {
        const data = typeof e.data === 'string' ? Buffer.from(e.data) : e.data;
        files.set(e.path, e);
        await add({ name: e.path, type: 'file', size: data.length, ...common(e) }, data);
        break;
      }
      case 'symlink':
        await add({ name: e.path, type: 'symlink', linkname: e.target, ...common({ mode: 0o777, ...e }) });
        break;
      case 'hardlink':
        await add({ name: e.path, type: 'link', linkname: e.target, ...common(files.get(e.target) ?? {}) });
        break;
      case 'whiteout': {
        const d = dirOf(e.path);
        await add({ name: `${d === '' ? '' : `${d}/`}.wh.${baseOf(e.path)}`, type: 'file', size: 0, ...common({}) });
        break;
      }
      case 'opaque':
        await add({ name: `${e.path}/.wh..wh..opq`, type: 'file', size: 0, ...common({}) });
        break;
    }
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

/**
 * Applies a layer's entries to `tree` as the OCI image spec defines it: whiteouts and opaque markers
 * act on the lower layers only, then additions replace what they name (a non-directory or a directory
 * of another kind is replaced with its subtree; an existing directory keeps its children and takes the
 * new metadata). Returns the new tree; `tree` is not changed.
 */
export function applyLayer(
  tree: ExpectedTree,
  entries: readonly LayerEntry[],
  layerIndex: number,
): Map<string, ExpectedNode> {
  const out = new Map(tree);
  const removeSubtree = (p: string, keepSelf: boolean): void => {
    for (const k of [...out.keys()]) if ((!keepSelf && k === p) || below(p, k)) out.delete(k);
  };
  for (const e of entries) {
    if (e.kind === 'whiteout') removeSubtree(e.path, false);
    else if (e.kind === 'opaque') removeSubtree(e.path, true);
  }
  for (const e of entries) {
    if (e.kind === 'whiteout' || e.kind === 'opaque') continue;
    const prev = out.get(e.path);
    if (prev && !(prev.kind === 'dir' && e.kind === 'dir')) removeSubtree(e.path, false);
    switch (e.kind) {
      case 'dir':
        out.set(e.path, { kind: 'dir', mode: e.mode ?? 0o755, uid: e.uid ?? 0, gid: e.gid ?? 0 });
        break;
      case 'file': {
        const data = typeof e.data === 'string' ? Buffer.from(e.data) : e.data;
        out.set(e.path, {
          kind: 'file',
          mode: e.mode ?? 0o644,
          uid: e.uid ?? 0,
          gid: e.gid ?? 0,
          mtime: e.mtime ?? defaultMtime,
          size: data.length,
          sha256: createHash('sha256').update(data).digest('hex'),
          linkGroup: `${layerIndex}:${e.path}`,
        });
        break;
      }
      case 'symlink':
        out.set(e.path, {
          kind: 'symlink',
          target: e.target,
          uid: e.uid ?? 0,
          gid: e.gid ?? 0,
          mtime: e.mtime ?? defaultMtime,
        });
        break;
      case 'hardlink': {
        const target = out.get(e.target);
        if (target?.kind !== 'file')
          throw new Error(`hardlink ${e.path}: target ${e.target} is not a file of this image`);
        out.set(e.path, target);
        break;
      }
    }
  }
  return out;
}

/** The tree a full unpack of `layers` (bottom first) must produce. */
export function expectedTree(layers: readonly (readonly LayerEntry[])[]): ExpectedTree {
  return layers.reduce<ExpectedTree>((tree, entries, i) => applyLayer(tree, entries, i), new Map());
}

/**
 * Compares the file tree under `root` (e.g. a mounted snapshot) with `expected`: kinds, modes, owners,
 * file bytes (sha256), sizes, file and symlink mtimes, symlink targets, hard-link identity, and that
 * nothing else exists. Returns one line per difference; an empty list means byte-for-byte equal.
 */
export async function compareTree(root: string, expected: ExpectedTree): Promise<string[]> {
  const diffs: string[] = [];
  const seen = new Set<string>();
  const groupIno = new Map<string, number>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const p = rel === '' ? name : `${rel}/${name}`;
      seen.add(p);
      const want = expected.get(p);
      const st = await lstat(join(root, p));
      const kind = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
      if (!want) {
        diffs.push(`${p}: unexpected ${kind}`);
        if (kind === 'dir') await walk(p);
        continue;
      }
      if (want.kind !== kind) {
        diffs.push(`${p}: is a ${kind}, want a ${want.kind}`);
        continue;
      }
      if (st.uid !== want.uid || st.gid !== want.gid)
        diffs.push(`${p}: owner ${st.uid}:${st.gid}, want ${want.uid}:${want.gid}`);
      if (want.kind === 'dir') {
        if ((st.mode & 0o7777) !== want.mode)
          diffs.push(`${p}: mode ${(st.mode & 0o7777).toString(8)}, want ${want.mode.toString(8)}`);
        await walk(p);
      } else if (want.kind === 'file') {
        if ((st.mode & 0o7777) !== want.mode)
          diffs.push(`${p}: mode ${(st.mode & 0o7777).toString(8)}, want ${want.mode.toString(8)}`);
        if (st.size !== want.size) diffs.push(`${p}: size ${st.size}, want ${want.size}`);
        else if (
          createHash('sha256')
            .update(await readFile(join(root, p)))
            .digest('hex') !== want.sha256
        )
          diffs.push(`${p}: content differs`);
        if (Math.floor(st.mtimeMs / 1000) !== want.mtime)
          diffs.push(`${p}: mtime ${Math.floor(st.mtimeMs / 1000)}, want ${want.mtime}`);
        const ino = groupIno.get(want.linkGroup);
        if (ino === undefined) groupIno.set(want.linkGroup, st.ino);
        else if (ino !== st.ino) diffs.push(`${p}: not a hard link of the other paths of ${want.linkGroup}`);
      } else {
        const target = await readlink(join(root, p));
        if (target !== want.target) diffs.push(`${p}: symlink to ${target}, want ${want.target}`);
        if (Math.floor(st.mtimeMs / 1000) !== want.mtime)
          diffs.push(`${p}: mtime ${Math.floor(st.mtimeMs / 1000)}, want ${want.mtime}`);
      }
    }
  };
  await walk('');
  for (const p of expected.keys()) if (!seen.has(p)) diffs.push(`${p}: missing`);
  return diffs;
}
