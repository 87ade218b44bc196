import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backgroundContext } from '@berth/common/context';
import { codeOf, ErrorCode } from '@berth/common/errors';
import { createLogger } from '@berth/common/log';
import type { Mount } from '@berth/common/mount';
import { MediaType } from '@berth/common/oci';
import type { ContentClient } from '@berth/content/client';
import { descendants, isAlive, mountsUnder, within } from '@berth/testing/proc';
import { type TempDir, tempDir } from '@berth/testing/tmp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUnpackAhead } from '../src/ahead/unpack-ahead.js';
import { createApplier } from '../src/apply/applier.js';
import { createExtract, type ExtractDeps } from '../src/apply/extract.js';
import { encodeEntry, TypeFlag } from '../src/archive/tar-header.js';
import { extractions } from './test-support/fixtures.js';

/**
 * A stage of Diff.Apply that stops making progress fails the call with deadline_exceeded naming the stage,
 * and a call given up by its client ends at once: in both cases tar and zstd are gone and the temporary
 * mount is removed. Stages are stalled for real: the content source stops sending, or tar / zstd is
 * stopped with SIGSTOP.
 */

const stallMs = 600;
const fileBytes = 128 * 1024 * 1024;

/** An uncompressed layer with one file of `size` zero bytes, made lazily chunk by chunk. */
async function* zeroLayer(size: number): AsyncGenerator<Buffer> {
  yield encodeEntry({ name: 'big', typeflag: TypeFlag.Reg, mode: 0o644, uid: 0, gid: 0, mtime: 0, size });
  const zeros = Buffer.alloc(1 << 20);
  for (let left = size; left > 0; left -= zeros.length) {
    yield left >= zeros.length ? zeros : zeros.subarray(0, left);
    await new Promise((r) => setImmediate(r));
  }
  yield Buffer.alloc(1024);
}

/** A content store serving `read` from `source`, whatever digest is asked for (a collaborator, not the unit). */
function contentFrom(source: () => AsyncIterable<Buffer>): ContentClient {
  return {
    read: () => source(),
    write: async () => undefined,
    list: async () => [],
    close: () => undefined,
  };
}

const children = (names: readonly string[]): number[] => descendants(process.pid, names).map((p) => p.pid);

describe.each(extractions)('Diff.Apply: stalls and cancellation (layers extracted %s)', (_, extractWith) => {
  /** An applier that extracts every layer in its own Apply (no unpack-ahead). */
  const applierOver = (deps: ExtractDeps & { tmpRoot: string }) =>
    createApplier({ extract: extractWith(deps), tmpRoot: deps.tmpRoot });

  let tmp: TempDir;
  let target: string;
  let tmpRoot: string;
  let zstdLayer: Buffer;
  const logs: string[] = [];
  const log = createLogger({ level: 'error', write: (l) => logs.push(l) });

  beforeAll(() => {
    tmp = tempDir('berth-diff-stall-');
    tmpRoot = join(tmp.path, 'mnt');
    target = join(tmp.path, 'target');
    mkdirSync(target);
    // A zstd layer of 128 MiB of zeros: a few KiB to hold, a second of work to apply.
    const header = join(tmp.path, 'header');
    writeFileSync(
      header,
      encodeEntry({ name: 'big', typeflag: TypeFlag.Reg, mode: 0o644, uid: 0, gid: 0, mtime: 0, size: fileBytes }),
    );
    zstdLayer = execFileSync(
      'sh',
      ['-c', `(cat "$1"; head -c ${fileBytes} /dev/zero; head -c 1024 /dev/zero) | zstd -1 -q -c`, 'sh', header],
      { maxBuffer: 64 << 20 },
    );
  });
  afterAll(async () => {
    await tmp?.remove();
  });

  // A bind mount: Apply mounts it under tmpRoot (mnt-*) and must always remove it.
  const mounts = (): Mount[] => [{ type: 'bind', source: target, options: ['rbind', 'rw'] }];
  const zstdDesc = () => ({
    mediaType: MediaType.ociLayerZstd,
    digest: `sha256:${createHash('sha256').update(zstdLayer).digest('hex')}`,
    size: zstdLayer.length,
  });
  const plainDesc = { mediaType: MediaType.ociLayer, digest: `sha256:${'0'.repeat(64)}`, size: fileBytes + 1536 };

  /** Everything the call started is gone: no tar or zstd child, no mount and no mount point left. */
  async function expectCleanedUp(pids: number[]): Promise<void> {
    expect(await within(1_000, () => pids.every((p) => !isAlive(p)))).toBe(true);
    expect(children(['tar', 'zstd'])).toEqual([]);
    expect(mountsUnder(tmpRoot)).toEqual([]);
    expect(readdirSync(tmpRoot)).toEqual([]);
  }

  it('a content stream that stops sending fails the call naming "content read"', async () => {
    const applier = applierOver({
      content: contentFrom(async function* () {
        const it = zeroLayer(fileBytes);
        for (let i = 0; i < 8; i++) {
          const r = await it.next();
          if (!r.done) yield r.value;
        }
        await new Promise(() => undefined);
      }),
      tmpRoot,
      stallMs,
    });
    logs.length = 0;
    const started = Date.now();
    const pids: number[] = [];
    const watching = setInterval(() => pids.push(...children(['tar'])), 20);
    const err = await applier.apply(backgroundContext(log, 'default'), plainDesc, mounts()).catch((e: unknown) => e);
    clearInterval(watching);
    expect(codeOf(err)).toBe(ErrorCode.DeadlineExceeded);
    expect(String((err as Error).message)).toMatch(/content read made no progress for 0\.600s/);
    expect(Date.now() - started).toBeLessThan(stallMs + 2_000);
    expect(logs.join('')).toMatch(/"msg":"stream stalled".*"stage":"content read"/);
    expect(pids.length).toBeGreaterThan(0);
    await expectCleanedUp(pids);
  });

  it('a tar that stops reading its stdin fails the call naming "tar stdin", and tar is killed', async () => {
    const applier = applierOver({ content: contentFrom(() => zeroLayer(fileBytes)), tmpRoot, stallMs });
    logs.length = 0;
    const call = applier.apply(backgroundContext(log, 'default'), plainDesc, mounts()).catch((e: unknown) => e);
    let tar: number | undefined;
    expect(await within(5_000, () => (tar = children(['tar'])[0]) !== undefined)).toBe(true);
    process.kill(tar as number, 'SIGSTOP');
    const err = await call;
    expect(codeOf(err)).toBe(ErrorCode.DeadlineExceeded);
    expect(String((err as Error).message)).toMatch(/tar stdin made no progress/);
    expect(logs.join('')).toMatch(/"stage":"tar stdin"/);
    await expectCleanedUp([tar as number]);
  });

  it('a zstd that stops fails the call naming the decompressor, and zstd and tar are killed', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const applier = applierOver({
      content: contentFrom(async function* () {
        yield zstdLayer.subarray(0, 1024);
        await gate;
        for (let off = 1024; off < zstdLayer.length; off += 64 * 1024) yield zstdLayer.subarray(off, off + 64 * 1024);
      }),
      tmpRoot,
      stallMs,
    });
    logs.length = 0;
    const call = applier.apply(backgroundContext(log, 'default'), zstdDesc(), mounts()).catch((e: unknown) => e);
    let zstd: number | undefined;
    expect(await within(5_000, () => (zstd = children(['zstd'])[0]) !== undefined)).toBe(true);
    process.kill(zstd as number, 'SIGSTOP');
    release();
    const err = await call;
    expect(codeOf(err)).toBe(ErrorCode.DeadlineExceeded);
    expect(String((err as Error).message)).toMatch(/decompress \(zstd\) made no progress/);
    await expectCleanedUp([zstd as number]);
  });

  it('a cancelled call ends within a second: zstd and tar killed, mount removed', async () => {
    const applier = applierOver({
      content: contentFrom(async function* () {
        for (let off = 0; off < zstdLayer.length; off += 4096) {
          yield zstdLayer.subarray(off, off + 4096);
          // Slow enough that the call is still running when it is cancelled.
          await new Promise((r) => setTimeout(r, 5));
        }
      }),
      tmpRoot,
      stallMs: 60_000,
    });
    const client = new AbortController();
    const call = applier
      .apply(backgroundContext(log, 'default', client.signal), zstdDesc(), mounts())
      .catch((e: unknown) => e);
    let pids: number[] = [];
    expect(await within(5_000, () => (pids = children(['tar', 'zstd'])).length === 2)).toBe(true);
    expect(mountsUnder(tmpRoot).length).toBe(1);
    const cancelledAt = Date.now();
    client.abort(new DOMException('client canceled the call', 'AbortError'));
    const err = await call;
    expect(Date.now() - cancelledAt).toBeLessThan(1_000);
    expect(codeOf(err)).toBe(ErrorCode.Canceled);
    await expectCleanedUp(pids);
  });

  it('the same layer applies completely when nothing stalls (the guard costs nothing)', async () => {
    const applier = applierOver({
      content: contentFrom(async function* () {
        yield zstdLayer;
      }),
      tmpRoot,
      // The guard armed as in production (where it is 60 s), not at the stall tests' hair trigger: on a loaded
      // machine tar may rightly pause writing 128 MiB for longer than their 0.6 s.
      stallMs: 10_000,
    });
    const out = await applier.apply(backgroundContext(log, 'default'), zstdDesc(), mounts());
    expect(out.size).toBe(fileBytes + 1536);
    expect(readFileSync(join(target, 'big')).length).toBe(fileBytes);
  });

  it('a cancelled call that took a layer extracted ahead ends that extraction too, and its staged tree', async () => {
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: { mediaType: MediaType.ociConfig, digest: `sha256:${'1'.repeat(64)}`, size: 2 },
        layers: [zstdDesc()],
      }),
    );
    const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
    const content: ContentClient = {
      async *read(_ctx, digest) {
        if (digest === manifestDigest) {
          yield manifest;
          return;
        }
        for (let off = 0; off < zstdLayer.length; off += 4096) {
          yield zstdLayer.subarray(off, off + 4096);
          await new Promise((r) => setTimeout(r, 5));
        }
      },
      write: async () => undefined,
      list: async () => [],
      close: () => undefined,
    };
    const extract = createExtract({ content, stallMs: 60_000 });
    const staging = join(tmp.path, 'ahead');
    const ahead = await createUnpackAhead({ content, extract, root: staging, log });
    try {
      const applier = createApplier({ extract, tmpRoot, ahead });
      ahead.committed('default', manifestDigest, manifest.length);
      // The manifest is read in the background before its layers are awaited.
      await new Promise((r) => setTimeout(r, 200));
      ahead.committed('default', zstdDesc().digest, zstdDesc().size);
      let pids: number[] = [];
      expect(await within(5_000, () => (pids = children(['tar', 'zstd'])).length === 2)).toBe(true);
      const client = new AbortController();
      const empty = join(tmp.path, 'empty-target');
      mkdirSync(empty);
      const call = applier
        .apply(backgroundContext(log, 'default', client.signal), zstdDesc(), [
          { type: 'bind', source: empty, options: ['rbind', 'rw'] },
        ])
        .catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 100));
      expect(ahead.stats.taken, 'the Apply took the extraction under way').toBe(1);
      const cancelledAt = Date.now();
      client.abort(new DOMException('client canceled the call', 'AbortError'));
      const err = await call;
      expect(Date.now() - cancelledAt).toBeLessThan(1_000);
      expect(codeOf(err)).toBe(ErrorCode.Canceled);
      expect(await within(1_000, () => pids.every((p) => !isAlive(p)))).toBe(true);
      expect(await within(1_000, () => readdirSync(staging).length === 0)).toBe(true);
      expect(readdirSync(empty)).toEqual([]);
    } finally {
      await ahead.close();
    }
  });
});
