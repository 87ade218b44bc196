import { type BigIntStats, createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, ServiceError } from '@berth/common/errors';
import { getAttribute } from '@napi-rs/xattr';
import { blockSize, encodeEntry, padTo, TypeFlag } from '../archive/tar-header.js';

/**
 * The one extended attribute containerd's walking differ compares and carries (continuity's
 * compareCapabilities, archive's WriteDiff): file capabilities, which decide what a binary may do.
 */
const capabilityXattr = 'security.capability';

/** Entries and file bodies are handed on in pieces up to this size: memory stays bounded by it, not by the layer. */
const pieceBytes = 1 << 20;

/**
 * The OCI layer (an uncompressed tar) that turns the tree at `lowerRoot` into the tree at `upperRoot`, as
 * containerd's walking differ writes it:
 * - both trees are walked together in path order; an entry only in upper is added (with everything below
 *   it), an entry only in lower becomes a whiteout `.wh.<name>` (nothing below it is visited), an entry in
 *   both is written when its metadata differs (type, mode, owner, device, size, mtime, link target);
 * - regular files with equal metadata count as unchanged (their contents are not read);
 * - every written entry is preceded by its parent directories (from upper) not yet written;
 * - files hard-linked in upper are written once and linked to from their other names in the layer.
 * Sockets are left out (a tar cannot carry them). Of extended attributes, `security.capability` is compared
 * and carried (as `SCHILY.xattr.security.capability`), as containerd does; others are neither.
 *
 * The layer is yielded in pieces as the walk goes: file bodies are streamed, never held whole.
 */
export async function* diffLayer(lowerRoot: string, upperRoot: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  let out: Buffer[] = [];
  const written = new Set<string>();
  const links = new Map<string, string>();
  const whiteoutTime = Math.floor(Date.now() / 1000);

  const includeParents = async (p: string): Promise<void> => {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (written.has(dir)) continue;
      await writeEntry(dir, await lstat(join(upperRoot, dir), { bigint: true }));
    }
  };

  const writeEntry = async (p: string, st: BigIntStats): Promise<void> => {
    await includeParents(p);
    written.add(p);
    const path = join(upperRoot, p);
    const capability = st.isSymbolicLink() ? null : await getAttribute(path, capabilityXattr);
    const base = {
      mode: Number(st.mode) & 0o7777,
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtime: Number(st.mtimeNs / 1_000_000_000n),
      ...(capability ? { pax: new Map([[`SCHILY.xattr.${capabilityXattr}`, capability]]) } : {}),
    };
    if (st.isDirectory()) {
      out.push(encodeEntry({ ...base, name: `${p}/`, typeflag: TypeFlag.Dir }));
    } else if (st.isSymbolicLink()) {
      out.push(encodeEntry({ ...base, name: p, typeflag: TypeFlag.Symlink, linkname: await readlink(path) }));
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const { major, minor } = deviceNumbers(st.rdev);
      const typeflag = st.isCharacterDevice() ? TypeFlag.Char : TypeFlag.Block;
      out.push(encodeEntry({ ...base, name: p, typeflag, devmajor: major, devminor: minor }));
    } else if (st.isFIFO()) {
      out.push(encodeEntry({ ...base, name: p, typeflag: TypeFlag.Fifo }));
    } else if (st.isFile()) {
      const inode = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? links.get(inode) : undefined;
      if (first !== undefined) {
        out.push(encodeEntry({ ...base, name: p, typeflag: TypeFlag.Link, linkname: first }));
        return;
      }
      if (st.nlink > 1n) links.set(inode, p);
      const size = Number(st.size);
      out.push(encodeEntry({ ...base, name: p, typeflag: TypeFlag.Reg, size }));
      body = { path, size, name: p };
    }
  };
  /** A regular file whose header is in `out` and whose bytes follow it. */
  let body: { path: string; size: number; name: string } | undefined;

  const whiteout = async (p: string): Promise<void> => {
    await includeParents(p);
    const i = p.lastIndexOf('/');
    const name = i === -1 ? `.wh.${p}` : `${p.slice(0, i)}/.wh.${p.slice(i + 1)}`;
    out.push(encodeEntry({ name, typeflag: TypeFlag.Reg, mode: 0, uid: 0, gid: 0, mtime: whiteoutTime }));
  };

  /** What is ready to go out: the queued headers, then the body of the file they end with (streamed). */
  async function* flush(): AsyncGenerator<Buffer> {
    if (out.length > 0) {
      const ready = out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
      out = [];
      yield ready;
    }
    if (body) {
      const b = body;
      body = undefined;
      yield* fileBody(b.path, b.size, b.name);
    }
  }

  /** Compares directory `rel` of both trees; `inLower` is false when lower has no directory there. */
  async function* visit(rel: string, inLower: boolean): AsyncGenerator<Buffer> {
    if (signal?.aborted) throw new ServiceError(ErrorCode.Canceled, 'context canceled');
    const upperNames = await readdir(join(upperRoot, rel));
    const lowerNames = inLower ? await readdir(join(lowerRoot, rel)) : [];
    const lowerSet = new Set(lowerNames);
    const upperSet = new Set(upperNames);
    for (const name of [...new Set([...lowerNames, ...upperNames])].sort(byteOrder)) {
      const p = rel === '' ? name : `${rel}/${name}`;
      if (!upperSet.has(name)) {
        await whiteout(p);
        continue;
      }
      const u = await lstat(join(upperRoot, p), { bigint: true });
      if (u.isSocket()) continue;
      const l = lowerSet.has(name) ? await lstat(join(lowerRoot, p), { bigint: true }) : undefined;
      if (!l || !(await sameEntry(l, u, join(lowerRoot, p), join(upperRoot, p)))) await writeEntry(p, u);
      if (body || outBytes() >= pieceBytes) yield* flush();
      if (u.isDirectory()) yield* visit(p, l?.isDirectory() === true);
    }
  }
  const outBytes = (): number => out.reduce((n, b) => n + b.length, 0);

  yield* visit('', true);
  out.push(Buffer.alloc(2 * blockSize));
  yield* flush();
}

/**
 * The `size` bytes of the file at `path` and the padding after them, in pieces. A file that changed size since
 * its header was written cannot be carried faithfully: failed_precondition (containerd fails such a diff too).
 */
async function* fileBody(path: string, size: number, name: string): AsyncGenerator<Buffer> {
  let got = 0;
  if (size > 0) {
    const stream = createReadStream(path, { start: 0, end: size - 1, highWaterMark: pieceBytes });
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        got += chunk.length;
        yield chunk;
      }
    } finally {
      // Wait for the descriptor to be closed: the caller unmounts the tree next, which an open file keeps busy.
      if (!stream.closed) {
        const closed = new Promise<void>((r) => stream.once('close', () => r()));
        stream.destroy();
        await closed;
      }
    }
  }
  if (got !== size) {
    throw new ServiceError(
      ErrorCode.FailedPrecondition,
      `${name} changed while being diffed (${got} of ${size} bytes)`,
    );
  }
  const pad = padTo(size) - size;
  if (pad > 0) yield Buffer.alloc(pad);
}

/** Path order by bytes, as Go sorts names (not by locale). */
const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Linux's dev_t split into major and minor (glibc's gnu_dev_major/minor). */
function deviceNumbers(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/**
 * containerd's sameFile without reading contents: same type and mode, owner, device, file capabilities
 * (`security.capability`), size for regular files, link target for symlinks, and mtime — to the second when either side has no sub-second part
 * (a filesystem or copy that truncated it), else to the nanosecond.
 */
async function sameEntry(l: BigIntStats, u: BigIntStats, lowerPath: string, upperPath: string): Promise<boolean> {
  if (l.mode !== u.mode || l.uid !== u.uid || l.gid !== u.gid) return false;
  if ((u.isCharacterDevice() || u.isBlockDevice()) && l.rdev !== u.rdev) return false;
  if (u.isFile() && l.size !== u.size) return false;
  const second = 1_000_000_000n;
  const truncated = l.mtimeNs % second === 0n || u.mtimeNs % second === 0n;
  if (truncated ? l.mtimeNs / second !== u.mtimeNs / second : l.mtimeNs !== u.mtimeNs) return false;
  if (u.isSymbolicLink()) return (await readlink(lowerPath)) === (await readlink(upperPath));
  const [lc, uc] = await Promise.all([
    getAttribute(lowerPath, capabilityXattr),
    getAttribute(upperPath, capabilityXattr),
  ]);
  return lc === null || uc === null ? lc === uc : lc.equals(uc);
}
