import { invalidArgument } from '@berth/common/errors';

/** Tar type flags (POSIX ustar plus the GNU and pax extensions layers use). */
export const TypeFlag = {
  Reg: '0',
  RegA: '\0',
  Link: '1',
  Symlink: '2',
  Char: '3',
  Block: '4',
  Dir: '5',
  Fifo: '6',
  Cont: '7',
  PaxHeader: 'x',
  PaxGlobal: 'g',
  GnuLongName: 'L',
  GnuLongLink: 'K',
} as const;

/** One ustar header block as written, before pax or GNU long-name records are applied. */
export interface RawHeader {
  readonly name: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: number;
  readonly typeflag: string;
  readonly linkname: string;
  readonly devmajor: number;
  readonly devminor: number;
}

const blockSize = 512;

function cString(b: Buffer, start: number, len: number): string {
  const end = b.indexOf(0, start);
  return b.toString('utf8', start, end === -1 || end > start + len ? start + len : end);
}

/** Octal, or GNU base-256 when the high bit of the first byte is set. */
function numeric(b: Buffer, start: number, len: number, what: string): number {
  const fast = plainOctal(b, start, len);
  if (fast !== undefined) return fast;
  const first = b[start] ?? 0;
  if (first & 0x80) {
    let v = BigInt(first & 0x7f);
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(b[start + i] ?? 0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArgument(`tar header: ${what} too large`);
    return Number(v);
  }
  const text = b
    .toString('latin1', start, start + len)
    .replace(/[\0 ]+$/, '')
    .trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw invalidArgument(`tar header: invalid ${what} ${JSON.stringify(text)}`);
  return parseInt(text, 8);
}

/**
 * The common shape, read without building strings: optional leading spaces, octal digits, then only NULs
 * and spaces. Undefined for anything else (the general parser decides).
 */
function plainOctal(b: Buffer, start: number, len: number): number | undefined {
  const end = start + len;
  let i = start;
  while (i < end && b[i] === 0x20) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i] ?? 0;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) {
    const c = b[i];
    if (c !== 0 && c !== 0x20) return undefined;
  }
  return digits > 0 && digits <= 17 ? v : undefined;
}

export function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < blockSize; i++) if (b[i] !== 0) return false;
  return true;
}

/** Parses one header block; invalid_argument when its checksum or fields are wrong. */
export function parseHeader(b: Buffer): RawHeader {
  const stored = numeric(b, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < blockSize; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : (b[i] ?? 0);
    unsigned += v;
    signed += v > 127 ? v - 256 : v;
  }
  if (stored !== unsigned && stored !== signed)
    throw invalidArgument('archive/tar: invalid tar header (checksum mismatch)');
  const magic = b.toString('latin1', 257, 263);
  let name = cString(b, 0, 100);
  // POSIX ustar splits long names into prefix/name; the old GNU format uses those bytes for other fields.
  if (magic === 'ustar\0') {
    const prefix = cString(b, 345, 155);
    if (prefix !== '') name = `${prefix}/${name}`;
  }
  return {
    name,
    mode: numeric(b, 100, 8, 'mode'),
    uid: numeric(b, 108, 8, 'uid'),
    gid: numeric(b, 116, 8, 'gid'),
    size: numeric(b, 124, 12, 'size'),
    mtime: numeric(b, 136, 12, 'mtime'),
    typeflag: String.fromCharCode(b[156] ?? 0),
    linkname: cString(b, 157, 100),
    devmajor: numeric(b, 329, 8, 'devmajor'),
    devminor: numeric(b, 337, 8, 'devminor'),
  };
}

/** Parses pax records (`<len> <key>=<value>\n`); values are raw bytes read as latin1 for xattrs. */
const nulFree = new Set(['path', 'linkpath', 'uname', 'gname']);

export function parsePax(body: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] === 0) break;
    const space = body.indexOf(0x20, pos);
    if (space === -1) throw invalidArgument('archive/tar: invalid pax record');
    const len = Number(body.toString('latin1', pos, space));
    if (!Number.isInteger(len) || len <= space - pos || pos + len > body.length) {
      throw invalidArgument('archive/tar: invalid pax record length');
    }
    const record = body.subarray(space + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq === -1) throw invalidArgument('archive/tar: invalid pax record');
    const key = record.toString('utf8', 0, eq);
    const value = record.subarray(eq + 1);
    // As Go's validPAXRecord: no NUL in a key, nor in a name; a NUL would otherwise reach the filesystem calls.
    if (key === '' || key.includes('\0') || (nulFree.has(key) && value.includes(0))) {
      throw invalidArgument('archive/tar: invalid tar header');
    }
    out.set(key, value);
    pos += len;
  }
  return out;
}

function octal(b: Buffer, start: number, len: number, v: number): void {
  b.write(`${v.toString(8).padStart(len - 1, '0')}\0`, start, len, 'latin1');
}

/** One pax record, with its self-inclusive length prefix. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = rest.length + 1;
  while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
  return Buffer.concat([Buffer.from(String(len)), rest]);
}

const padTo = (n: number): number => Math.ceil(n / blockSize) * blockSize;

export interface EncodeEntry {
  readonly name: string;
  readonly typeflag: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: number;
  readonly devmajor?: number;
  readonly devminor?: number;
  readonly linkname?: string;
  /** Body size (the caller writes the padded body after the header). */
  readonly size?: number;
  /** Extra pax records (e.g. `SCHILY.xattr.<name>`). */
  readonly pax?: ReadonlyMap<string, Buffer>;
}

const maxOctal = (len: number): number => 8 ** (len - 1) - 1;

/** Encodes a member's header (preceded by a pax header when a value does not fit ustar). */
export function encodeEntry(e: EncodeEntry): Buffer {
  const size = e.size ?? 0;
  const linkname = e.linkname ?? '';
  if (
    (e.pax === undefined || e.pax.size === 0) &&
    e.name.length <= 99 &&
    linkname.length <= 99 &&
    size <= maxOctal(12) &&
    e.uid <= maxOctal(8) &&
    e.gid <= maxOctal(8) &&
    printableAscii.test(e.name) &&
    printableAscii.test(linkname)
  ) {
    return headerBlock({ ...e, size, linkname });
  }
  return encodeWithPax(e);
}

const printableAscii = /^[\x20-\x7e]*$/;

function encodeWithPax(e: EncodeEntry): Buffer {
  const pax = new Map(e.pax ?? []);
  let name = e.name;
  if (Buffer.byteLength(name) > 99 || !/^[\x20-\x7e]*$/.test(name)) {
    pax.set('path', Buffer.from(name));
    name = 'pax-path';
  }
  let linkname = e.linkname ?? '';
  if (Buffer.byteLength(linkname) > 99 || !/^[\x20-\x7e]*$/.test(linkname)) {
    pax.set('linkpath', Buffer.from(linkname));
    linkname = 'pax-linkpath';
  }
  const size = e.size ?? 0;
  if (size > maxOctal(12)) pax.set('size', Buffer.from(String(size)));
  if (e.uid > maxOctal(8)) pax.set('uid', Buffer.from(String(e.uid)));
  if (e.gid > maxOctal(8)) pax.set('gid', Buffer.from(String(e.gid)));
  const blocks: Buffer[] = [];
  if (pax.size > 0) {
    const body = Buffer.concat([...pax].map(([k, v]) => paxRecord(k, v)));
    blocks.push(
      headerBlock({
        name: 'PaxHeader',
        typeflag: TypeFlag.PaxHeader,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: body.length,
        linkname: '',
      }),
    );
    const padded = Buffer.alloc(padTo(body.length));
    body.copy(padded);
    blocks.push(padded);
  }
  blocks.push(
    headerBlock({
      ...e,
      name,
      linkname,
      size: Math.min(size, maxOctal(12)),
      uid: Math.min(e.uid, maxOctal(8)),
      gid: Math.min(e.gid, maxOctal(8)),
    }),
  );
  return Buffer.concat(blocks);
}

function headerBlock(e: EncodeEntry & { size: number; linkname: string }): Buffer {
  const b = Buffer.alloc(blockSize);
  b.write(e.name, 0, 100, 'utf8');
  octal(b, 100, 8, e.mode & 0o7777);
  octal(b, 108, 8, e.uid);
  octal(b, 116, 8, e.gid);
  octal(b, 124, 12, e.size);
  octal(b, 136, 12, Math.max(0, Math.floor(e.mtime)));
  b.write(e.typeflag, 156, 1, 'latin1');
  b.write(e.linkname, 157, 100, 'utf8');
  b.write('ustar\x0000', 257, 8, 'latin1');
  octal(b, 329, 8, e.devmajor ?? 0);
  octal(b, 337, 8, e.devminor ?? 0);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < blockSize; i++) sum += b[i] ?? 0;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return b;
}

export { blockSize, padTo };
