import { mkdir, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { procInfo } from '@berth/testing/proc';
import { type TempDir, tempDir } from '@berth/testing/tmp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildTar } from '../../test/test-support/fixtures.js';
import { GnuTarSink } from './gnu-tar.js';
import { discardSpareTar, prepareSpareTar, spareTarPid } from './tar-process.js';

/** Running or a zombie: either way not reaped. */
const exists = (pid: number | undefined): boolean => pid !== undefined && procInfo(pid) !== undefined;

describe('a spare tar, started ahead of its layer', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = tempDir('berth-spare-tar-');
  });
  afterEach(async () => {
    await discardSpareTar();
    await tmp.remove();
  });

  it('extracts the next layer into the directory it is given, odd characters included, then is used up', async () => {
    const dir = join(tmp.path, 'a dir with "quotes", $HOME, \\ and spaces');
    await mkdir(dir);
    prepareSpareTar();
    const spare = spareTarPid();
    expect(exists(spare)).toBe(true);

    // Other tar arguments (the opaque-directory fix-up): a tar of its own, the spare keeps waiting.
    const fixup = new GnuTarSink(join(tmp.path, 'unused'), ['--xattrs-include=trusted.overlay.opaque']);
    fixup.begin();
    expect(fixup.pid).not.toBe(spare);
    await fixup.abort();
    expect(spareTarPid()).toBe(spare);

    const sink = new GnuTarSink(dir);
    sink.begin();
    expect(sink.pid).toBe(spare);
    expect(spareTarPid()).toBeUndefined();
    await sink.write(
      await buildTar([
        { name: 'etc/', type: 'directory', mode: 0o755 },
        { name: 'etc/hello', type: 'file', mode: 0o640, body: 'hello\n' },
        { name: 'etc/link', type: 'symlink', linkname: 'hello' },
      ]),
    );
    await sink.finish();
    expect(await readFile(join(dir, 'etc/hello'), 'utf8')).toBe('hello\n');
    expect((await stat(join(dir, 'etc/hello'))).mode & 0o777).toBe(0o640);
    expect(await readlink(join(dir, 'etc/link'))).toBe('hello');

    // The next sink starts a tar of its own.
    const next = new GnuTarSink(join(tmp.path, 'unused'));
    next.begin();
    expect(next.pid).not.toBe(spare);
    await next.abort();
  });

  it('reports tar failing in the spare as a tar of its own would', async () => {
    prepareSpareTar();
    const sink = new GnuTarSink(join(tmp.path, 'missing'));
    sink.begin();
    expect(sink.pid).toBeDefined();
    await sink.write(await buildTar([{ name: 'a', type: 'file', body: 'a' }])).catch(() => undefined);
    await expect(sink.finish()).rejects.toThrow(/failed to extract layer: tar exited with 2: .*missing/);
  });

  it('is killed and reaped when discarded; no second spare starts while one waits', async () => {
    prepareSpareTar();
    const pid = spareTarPid();
    prepareSpareTar();
    expect(spareTarPid()).toBe(pid);
    expect(exists(pid)).toBe(true);
    await discardSpareTar();
    expect(spareTarPid()).toBeUndefined();
    expect(exists(pid)).toBe(false);
  });
});
