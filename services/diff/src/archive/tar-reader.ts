/*
 * Why a hand-written tar reader: the layer's bytes reach the disk as root, so the reader must keep every
 * record exactly and refuse what it cannot read. The libraries weighed did not:
 * - tar-stream (3.2.2; used here only to build test fixtures) decodes pax records as UTF-8 text, so a binary
 *   xattr value (security.capability, trusted.overlay.*) comes out altered; it stops at a malformed pax record
 *   without an error, and keeps mtime to whole seconds.
 * - tar (node-tar) extracts to the filesystem by its own rules, without OCI whiteouts or SCHILY.xattr records.
 * - nanotar parses a whole archive held in memory; layers are streamed.
 * This file and tar-header.ts are the whole format (ustar, pax, GNU long names), fuzzed by fuzz/tar.fuzz.test.ts.
 */
import { invalidArgument } from '@berth/common/errors';
import { blockSize, isZeroBlock, padTo, parseHeader, parsePax, TypeFlag } from './tar-header.js';

/** One archive member with pax and GNU long-name records applied. */
export interface TarEntry {
  readonly name: string;
  readonly linkname: string;
  readonly typeflag: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: number;
  readonly devmajor: number;
  readonly devminor: number;
  /** `SCHILY.xattr.*` records, by attribute name. */
  readonly xattrs: ReadonlyMap<string, Buffer>;
  /** The pax `mtime` record as written (sub-second precision), if any. */
  readonly paxMtime: Buffer | undefined;
  /** Bytes of body on the wire (`size` rounded up to whole blocks). */
  readonly paddedSize: number;
}

/** Pulls exact byte counts from a chunked stream. */
class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  private async fill(n: number): Promise<void> {
    while (this.buffered < n && !this.done) {
      const next = await this.source.next();
      if (next.done) this.done = true;
      else if (next.value.length > 0) {
        this.chunks.push(next.value);
        this.buffered += next.value.length;
      }
    }
  }

  /** Exactly n bytes, or undefined at a clean end of stream; invalid_argument when it ends mid-way. */
  async exact(n: number): Promise<Buffer | undefined> {
    if (this.buffered >= n) return this.take(n);
    await this.fill(n);
    if (this.buffered === 0 && this.done) return undefined;
    if (this.buffered < n) throw invalidArgument('archive/tar: unexpected EOF');
    return this.take(n);
  }

  /** Up to n bytes (at least one unless the stream ended). */
  async upTo(n: number): Promise<Buffer | undefined> {
    await this.fill(1);
    if (this.buffered === 0) return undefined;
    const first = this.chunks[0];
    return this.take(Math.min(n, first ? first.length : n, this.buffered));
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    // Straddles chunks: copy just the n bytes.
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0];
      if (!c) throw new Error('ByteReader: buffered count is wrong');
      const k = Math.min(c.length, n - at);
      c.copy(out, at, 0, k);
      at += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }

  /** Up to n buffered bytes from the first chunk; only when `available` > 0. */
  takeUpTo(n: number): Buffer {
    const first = this.chunks[0];
    return this.take(Math.min(n, first ? first.length : 0));
  }

  /** Bytes available without waiting. */
  get available(): number {
    return this.buffered;
  }

  /** Stops the source early (the caller gave up): lets it release what it holds. */
  async close(): Promise<void> {
    this.done = true;
    await this.source.return?.();
  }

  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (!this.done) {
      const next = await this.source.next();
      if (next.done) this.done = true;
    }
  }
}

const maxMetaSize = 1 << 20;

/** A pax uid/gid record: a non-negative decimal integer (Go: strconv.ParseInt, else ErrHeader). */
function paxId(pax: ReadonlyMap<string, Buffer>, key: 'uid' | 'gid'): number | undefined {
  const v = pax.get(key)?.toString('latin1');
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(n)) throw invalidArgument('archive/tar: invalid tar header');
  return n;
}

/** A pax mtime record: decimal seconds with an optional fraction (Go: parsePAXTime, else ErrHeader). */
function paxTime(pax: ReadonlyMap<string, Buffer>): number | undefined {
  const v = pax.get('mtime')?.toString('latin1');
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^-?[0-9]+(\.[0-9]*)?$/.test(v) || !Number.isFinite(n)) throw invalidArgument('archive/tar: invalid tar header');
  return n;
}
const headerOnly = new Set<string>([
  TypeFlag.Dir,
  TypeFlag.Symlink,
  TypeFlag.Link,
  TypeFlag.Char,
  TypeFlag.Block,
  TypeFlag.Fifo,
]);

/**
 * Reads a tar stream member by member. After each `next()` the caller must consume the body with
 * `forwardBody()` or `skip()` before asking for the next member. `end()` reads whatever follows
 * the end-of-archive marker, so the whole stream is consumed (and digested) as containerd does.
 */
export class TarReader {
  private readonly bytes: ByteReader;
  private pendingBody = 0;

  constructor(source: AsyncIterable<Buffer>) {
    this.bytes = new ByteReader(source[Symbol.asyncIterator]());
  }

  private async meta(size: number): Promise<Buffer> {
    if (size > maxMetaSize) throw invalidArgument('archive/tar: metadata record too large');
    const padded = await this.bytes.exact(padTo(size));
    if (!padded) throw invalidArgument('archive/tar: unexpected EOF');
    return padded;
  }

  /** The next member, or undefined at the end of the archive. */
  async next(): Promise<TarEntry | undefined> {
    if (this.pendingBody > 0) throw new Error('tar body not consumed');
    let pax = new Map<string, Buffer>();
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const block = await this.bytes.exact(blockSize);
      if (!block || isZeroBlock(block)) return undefined;
      const h = parseHeader(block);
      if (h.typeflag === TypeFlag.PaxHeader || h.typeflag === TypeFlag.PaxGlobal) {
        const body = await this.meta(h.size);
        // Global records apply to every later member; layers do not use them for names, but honour them.
        pax = new Map([...pax, ...parsePax(body.subarray(0, h.size))]);
        continue;
      }
      if (h.typeflag === TypeFlag.GnuLongName || h.typeflag === TypeFlag.GnuLongLink) {
        const body = await this.meta(h.size);
        const end = body.indexOf(0);
        const text = body.toString('utf8', 0, end === -1 || end > h.size ? h.size : end);
        if (h.typeflag === TypeFlag.GnuLongName) longName = text;
        else longLink = text;
        continue;
      }
      const size = pax.has('size') ? Number(pax.get('size')?.toString()) : h.size;
      if (!Number.isSafeInteger(size) || size < 0) throw invalidArgument('archive/tar: invalid size');
      if ([...pax.keys()].some((k) => k.startsWith('GNU.sparse.'))) {
        throw invalidArgument(`unsupported tar member ${JSON.stringify(h.name)}: GNU sparse files are not supported`);
      }
      const xattrs = new Map<string, Buffer>();
      for (const [k, v] of pax) if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
      // As Go's archive/tar: these types never carry a body, whatever their size field says.
      const hasBody = !headerOnly.has(h.typeflag);
      const entry: TarEntry = {
        name: pax.get('path')?.toString('utf8') ?? longName ?? h.name,
        linkname: pax.get('linkpath')?.toString('utf8') ?? longLink ?? h.linkname,
        typeflag: h.typeflag,
        mode: h.mode,
        uid: paxId(pax, 'uid') ?? h.uid,
        gid: paxId(pax, 'gid') ?? h.gid,
        size: hasBody ? size : 0,
        mtime: paxTime(pax) ?? h.mtime,
        devmajor: h.devmajor,
        devminor: h.devminor,
        xattrs,
        paxMtime: pax.get('mtime'),
        paddedSize: hasBody ? padTo(size) : 0,
      };
      this.pendingBody = entry.paddedSize;
      return entry;
    }
  }

  /**
   * Hands the current member's body (as on the wire) to `push` in the largest pieces at hand, waiting
   * only for more input or when `push` asks to (it returns a promise).
   */
  async forwardBody(push: (chunk: Buffer) => Promise<void> | undefined): Promise<void> {
    while (this.pendingBody > 0) {
      const chunk =
        this.bytes.available > 0
          ? this.bytes.takeUpTo(this.pendingBody)
          : await this.bytes.upTo(Math.min(this.pendingBody, 1 << 20));
      if (!chunk) throw invalidArgument('archive/tar: unexpected EOF');
      this.pendingBody -= chunk.length;
      const wait = push(chunk);
      if (wait) await wait;
    }
  }

  async skip(): Promise<void> {
    while (this.pendingBody > 0) {
      const chunk =
        this.bytes.available > 0 ? this.bytes.takeUpTo(this.pendingBody) : await this.bytes.upTo(this.pendingBody);
      if (!chunk) throw invalidArgument('archive/tar: unexpected EOF');
      this.pendingBody -= chunk.length;
    }
  }

  async end(): Promise<void> {
    await this.bytes.drain();
  }

  /** Abandons the stream (after a failure). Never throws. */
  async close(): Promise<void> {
    await this.bytes.close().catch(() => undefined);
  }
}
