import { codeOf } from '@berth/common/errors';
import { nopLogger } from '@berth/common/log';
import { tempDir } from '@berth/testing/tmp';
import { describe, expect, it } from 'vitest';
import { applyLayer } from './apply.js';
import { encodeEntry, parsePax, TypeFlag } from './tar-header.js';
import { TarReader } from './tar-reader.js';

/** Found by fuzz/tar.fuzz.test.ts: a pax path with NUL bytes reached lstat, which threw a TypeError (UNKNOWN). */
describe('pax records with NUL characters', () => {
  const record = (key: string, value: string): Buffer => {
    const rest = ` ${key}=${value}\n`;
    let len = rest.length + 1;
    while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
    return Buffer.from(`${len}${rest}`, 'latin1');
  };

  it('refuses a NUL in a path, linkpath, uname or gname value, or in any key, as Go does', () => {
    for (const key of ['path', 'linkpath', 'uname', 'gname']) {
      expect(() => parsePax(record(key, 'a\0b'))).toThrow('archive/tar: invalid tar header');
    }
    expect(() => parsePax(record('SCHILY.xattr.user.k\0x', 'v'))).toThrow('archive/tar: invalid tar header');
    expect(parsePax(record('SCHILY.xattr.user.k', 'binary\0value')).get('SCHILY.xattr.user.k')?.length).toBe(12);
  });

  it('Diff.Apply answers invalid_argument for such a member', async () => {
    const dir = tempDir('berth-pax-nul-');
    try {
      const member = encodeEntry({
        name: 'x',
        typeflag: TypeFlag.Reg,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: 0,
        pax: new Map([['path', Buffer.from('pax-p\0\0\0\x01é', 'latin1')]]),
      });
      const tar = Buffer.concat([member, Buffer.alloc(1024)]);
      async function* once(): AsyncGenerator<Buffer> {
        yield tar;
      }
      const err = await applyLayer(once(), { root: dir.path, whiteouts: 'delete', parents: [], log: nopLogger }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(codeOf(err)).toBe('invalid_argument');
    } finally {
      await dir.remove();
    }
  });
});

/** Found by fuzz/tar.fuzz.test.ts: a pax mtime of "x" became NaN, and GNU tar refused the re-encoded member (UNKNOWN). */
describe('pax numbers', () => {
  const member = (pax: Record<string, string>): Buffer =>
    Buffer.concat([
      encodeEntry({
        name: 'x',
        typeflag: TypeFlag.Reg,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: 0,
        pax: new Map(Object.entries(pax).map(([k, v]) => [k, Buffer.from(v)])),
      }),
      Buffer.alloc(1024),
    ]);
  const read = async (tar: Buffer): Promise<unknown> => {
    async function* once(): AsyncGenerator<Buffer> {
      yield tar;
    }
    const r = new TarReader(once());
    return r.next().then(
      (e) => e,
      (e: unknown) => e,
    );
  };

  it('refuses a non-numeric mtime, uid or gid as an invalid header, and reads good ones', async () => {
    for (const pax of [
      { mtime: 'x' },
      { mtime: '1e5' },
      { uid: '-1' },
      { gid: '12a' },
      { uid: '99999999999999999999' },
    ]) {
      const e = await read(member(pax));
      expect(codeOf(e), JSON.stringify(pax)).toBe('invalid_argument');
    }
    const ok = (await read(member({ mtime: '1700000000.5', uid: '1000', gid: '0' }))) as { mtime: number; uid: number };
    expect(ok.mtime).toBe(1700000000.5);
    expect(ok.uid).toBe(1000);
  });
});
