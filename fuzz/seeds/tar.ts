import { encodeEntry, TypeFlag } from '@berth/diff/archive/tar-header';

/**
 * Layer tars that exercise the reader and the extractor's checks: plain members, pax and GNU long names,
 * xattrs, links, whiteouts, and every escape attempt the extractor must refuse (`..`, absolute names, links
 * and parents through symlinks that leave the root).
 */

const base = { mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000 };
const file = (name: string, body = 'x'): Buffer =>
  Buffer.concat([encodeEntry({ ...base, name, typeflag: TypeFlag.Reg, size: body.length }), pad(Buffer.from(body))]);
const dir = (name: string): Buffer => encodeEntry({ ...base, mode: 0o755, name, typeflag: TypeFlag.Dir });
const symlink = (name: string, target: string): Buffer =>
  encodeEntry({ ...base, name, typeflag: TypeFlag.Symlink, linkname: target });
const hardlink = (name: string, target: string): Buffer =>
  encodeEntry({ ...base, name, typeflag: TypeFlag.Link, linkname: target });
const end = Buffer.alloc(1024);

function pad(b: Buffer): Buffer {
  const rem = b.length % 512;
  return rem === 0 ? b : Buffer.concat([b, Buffer.alloc(512 - rem)]);
}

const tar = (...members: Buffer[]): Buffer => Buffer.concat([...members, end]);

export const tarSeeds: readonly Buffer[] = [
  tar(
    dir('etc/'),
    file('etc/hosts', '127.0.0.1 localhost\n'),
    symlink('etc/link', 'hosts'),
    hardlink('etc/hard', 'etc/hosts'),
  ),
  tar(file(`${'d/'.repeat(60)}long-name-${'n'.repeat(120)}`, 'long'), file('short')),
  tar(
    encodeEntry({
      ...base,
      name: 'pax',
      typeflag: TypeFlag.Reg,
      size: 3,
      pax: new Map([
        ['SCHILY.xattr.user.k', Buffer.from('v')],
        ['mtime', Buffer.from('1700000000.123456789')],
        ['path', Buffer.from('pax-path-é')],
      ]),
    }),
    pad(Buffer.from('abc')),
  ),
  tar(dir('a/'), file('a/.wh.b'), file('a/.wh..wh..opq'), file('.wh.etc'), file('a/c')),
  tar(file('../escape'), file('/abs')),
  tar(symlink('out', '../outside'), file('out/pwned')),
  tar(symlink('abs', '/tmp'), file('abs/pwned')),
  tar(hardlink('h', '../outside/sentinel')),
  tar(symlink('x', 'y'), symlink('y', 'x'), file('x/z')),
  tar(file('escape/pwned'), file('trap/inner/pwned'), hardlink('hl', 'escape/sentinel')),
  tar(
    encodeEntry({ ...base, name: 'dev', typeflag: TypeFlag.Fifo }),
    encodeEntry({ ...base, name: 'chr', typeflag: TypeFlag.Char, devmajor: 1, devminor: 3 }),
  ),
];

/** Rewrites the checksum of every 512-byte block that looks like a ustar header, so mutations get past it. */
export function fixChecksums(b: Buffer): Buffer {
  for (let at = 0; at + 512 <= b.length; at += 512) {
    if (b.toString('latin1', at + 257, at + 262) !== 'ustar') continue;
    b.fill(0x20, at + 148, at + 156);
    let sum = 0;
    for (let i = at; i < at + 512; i++) sum += b[i] ?? 0;
    b.write(`${sum.toString(8).padStart(6, '0')}\0 `, at + 148, 'latin1');
  }
  return b;
}

/** The bytes in chunks of random sizes, as a network stream delivers them. */
export async function* chunked(b: Buffer, sizes: () => number): AsyncIterable<Buffer> {
  for (let at = 0; at < b.length; ) {
    const n = Math.max(1, sizes());
    yield b.subarray(at, at + n);
    at += n;
  }
}
