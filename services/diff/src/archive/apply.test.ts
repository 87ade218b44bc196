import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { codeOf } from '@berth/common/errors';
import { nopLogger } from '@berth/common/log';
import { type TempDir, tempDir } from '@berth/testing/tmp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildTar, type LayerEntry, treeOf } from '../../test/test-support/fixtures.js';
import { applyLayer, cleanName } from './apply.js';

async function* chunks(b: Buffer, size = 777): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

describe('cleanName', () => {
  it('accepts relative names and refuses absolute ones and ..', () => {
    expect(cleanName('./a//b/')).toBe('a/b');
    expect(cleanName('./')).toBe('');
    expect(() => cleanName('/etc/passwd')).toThrow('absolute path');
    expect(() => cleanName('../x')).toThrow('path traversal');
    expect(() => cleanName('a/../../x')).toThrow('path traversal');
  });
});

for (const mode of ['delete', 'overlay'] as const) {
  describe(`malicious layers are refused and leave the host untouched (${mode} mode)`, () => {
    let tmp: TempDir;
    let root: string;
    let outside: string;

    beforeEach(async () => {
      tmp = tempDir('berth-evil-');
      root = join(tmp.path, 'root');
      outside = join(tmp.path, 'outside');
      await mkdir(root);
      await mkdir(outside);
      await writeFile(join(outside, 'passwd'), 'host passwd\n');
    });
    afterEach(async () => {
      await tmp.remove();
    });

    const apply = async (entries: LayerEntry[]): Promise<unknown> =>
      applyLayer(chunks(await buildTar(entries)), { root, whiteouts: mode, parents: [], log: nopLogger }).then(
        () => undefined,
        (e: unknown) => e,
      );

    /** Nothing outside `root` changed: the sibling dir holds only its passwd, with its content. */
    const hostUntouched = async (): Promise<void> => {
      expect((await readdir(tmp.path)).sort()).toEqual(['outside', 'root']);
      expect(await readdir(outside)).toEqual(['passwd']);
      expect(await readFile(join(outside, 'passwd'), 'utf8')).toBe('host passwd\n');
      expect((await lstat(join(outside, 'passwd'))).nlink).toBe(1);
    };

    const refused = (e: unknown, text: string): void => {
      expect(e, 'the layer was applied').toBeInstanceOf(Error);
      expect(codeOf(e)).toBe('invalid_argument');
      expect((e as Error).message).toContain(text);
    };

    it('path traversal ../x', async () => {
      refused(
        await apply([
          { name: 'ok', body: 'fine' },
          { name: '../x', body: 'pwned' },
        ]),
        'path traversal',
      );
      await hostUntouched();
    });

    it('absolute member names', async () => {
      refused(await apply([{ name: `${outside}/pwned`, body: 'pwned' }]), 'absolute path');
      await hostUntouched();
    });

    it('symlink escape: a -> <outside> then a/passwd', async () => {
      const e = await apply([
        { name: 'a', type: 'symlink', linkname: outside },
        { name: 'a/passwd', body: 'root::0:0:::\n' },
      ]);
      refused(e, `a is a symlink to ${JSON.stringify(outside)}, outside the root`);
      await hostUntouched();
    });

    it('symlink escape: a -> /etc then a/<file>', async () => {
      refused(
        await apply([
          { name: 'a', type: 'symlink', linkname: '/etc' },
          { name: 'a/berth-escape-probe', body: 'x' },
        ]),
        'outside the root',
      );
      expect(existsSync('/etc/berth-escape-probe')).toBe(false);
    });

    it('relative and chained symlinks that climb out', async () => {
      refused(
        await apply([
          { name: 'up', type: 'symlink', linkname: '../outside' },
          { name: 'up/passwd', body: 'pwned' },
        ]),
        'leads outside the root',
      );
      refused(
        await apply([
          { name: 'c', type: 'symlink', linkname: 'd' },
          { name: 'd', type: 'symlink', linkname: outside },
          { name: 'c/passwd', body: 'pwned' },
        ]),
        'outside the root',
      );
      await hostUntouched();
    });

    it('hard links to outside files', async () => {
      refused(await apply([{ name: 'h', type: 'link', linkname: '../outside/passwd' }]), 'path traversal');
      refused(await apply([{ name: 'h', type: 'link', linkname: `${outside}/passwd` }]), 'absolute path');
      refused(
        await apply([
          { name: 'l', type: 'symlink', linkname: outside },
          { name: 'h', type: 'link', linkname: 'l/passwd' },
        ]),
        'outside the root',
      );
      await hostUntouched();
    });

    it('a symlink already in the tree (from a lower layer) is not followed out', async () => {
      await symlink(outside, join(root, 'evil'));
      refused(await apply([{ name: 'evil/passwd', body: 'pwned' }]), 'outside the root');
      refused(await apply([{ name: 'evil/.wh.passwd' }]), 'outside the root');
      await hostUntouched();
      // Replacing the link itself is fine, and does not write through it.
      expect(await apply([{ name: 'evil', body: 'now a file' }])).toBeUndefined();
      expect(await readFile(join(root, 'evil'), 'utf8')).toBe('now a file');
      await hostUntouched();
    });

    it('whiteout names that escape their directory', async () => {
      refused(await apply([{ name: 'd/', type: 'directory' }, { name: 'd/.wh..' }]), 'invalid whiteout name');
      await hostUntouched();
    });

    it('symlinks that stay inside are followed as the container would', async () => {
      expect(
        await apply([
          { name: 'usr/', type: 'directory' },
          { name: 'usr/lib/', type: 'directory' },
          { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
          { name: 'usr/share', type: 'symlink', linkname: '../usr/lib/../lib' },
          { name: 'lib/libc.so', body: 'libc' },
          { name: 'usr/share/z', body: 'z' },
          { name: 'h', type: 'link', linkname: 'lib/libc.so' },
        ]),
      ).toBeUndefined();
      const tree = await treeOf(root);
      expect(tree['h']).toMatch(/^file 0644 0:0 4 [0-9a-f]+$/);
      // The same inode: the tree lists the first path it met (h) as the link of the second.
      expect(tree['usr/lib/libc.so']).toMatch(/^file 0644 0:0 4 [0-9a-f]+ link=h$/);
      expect(tree['usr/share']).toBe('symlink 0:0 -> ../usr/lib/../lib');
      expect(tree['usr/lib/z']).toMatch(/^file /);
      await hostUntouched();
    });
  });
}
