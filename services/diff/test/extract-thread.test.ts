import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { descendants, procInfo, within } from '@berth/testing/proc';
import { type TempDir, tempDir } from '@berth/testing/tmp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createThreadedExtract } from '../src/apply/extract-thread.js';
import { buildTar, ctxIn } from './test-support/fixtures.js';

/** This process's child processes that are a spare tar's shell, running or not yet reaped (a zombie keeps its name). */
const spareShells = (): number[] => descendants(process.pid, ['sh']).map((p) => p.pid);

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

describe('extraction threads and their spare tar', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = tempDir('berth-extract-thread-');
  });
  afterEach(async () => {
    await tmp.remove();
  });

  it('keep a spare tar once idle, extract the next layer with it, and reap it when they end', async () => {
    const extract = createThreadedExtract({ idleMs: 1_500 });
    const layer = async (name: string): Promise<string> => {
      const tar = await buildTar([{ name, type: 'file', mode: 0o644, body: `${name}\n` }]);
      const root = join(tmp.path, name);
      await mkdir(root);
      await extract(
        ctxIn(),
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: `sha256:${createHash('sha256').update(tar).digest('hex')}`,
          size: tar.length,
        },
        { root, whiteouts: 'overlay', parents: [] },
        { bytes: once(tar), verified: false },
      );
      return readFile(join(root, name), 'utf8');
    };
    expect(spareShells()).toEqual([]);
    expect(await layer('first')).toBe('first\n');
    // Idle 250 ms: the thread starts a spare.
    expect(await within(1_000, () => spareShells().length === 1)).toBe(true);
    const spare = spareShells()[0];
    expect(await layer('second')).toBe('second\n');
    expect(procInfo(spare ?? 0), 'the spare became the second layer’s tar and was reaped').toBeUndefined();
    // Then a new spare, and once the thread has idled 1.5 s it ends, killing and reaping it: no zombie left.
    expect(await within(1_000, () => spareShells().length === 1)).toBe(true);
    expect(await within(4_000, () => spareShells().length === 0)).toBe(true);
  });
});
