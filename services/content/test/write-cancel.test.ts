import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WriteAction } from '@berth/proto/containerd/services/content/v1/content';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failsWith, type Harness, md, readAll, sha256, startHarness, WriteStream } from './harness.js';

/**
 * A Write stream whose client goes away, or goes silent, ends at once on the server: the ref's lock is
 * released and the bytes written so far stay in the ingest, so the same ref resumes from its offset.
 */
describe('Content.Write: cancelled and stalled clients', () => {
  const stallMs = 400;
  let dir: string;
  let h: Harness;
  const ns = `wc-${process.pid}`;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-content-wc-'));
    h = await startHarness({ kind: 'fs', root: join(dir, 'blobs') }, undefined, undefined, { stallMs });
  });
  afterAll(async () => {
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Opens `ref`, writes `bytes` of `data`, and leaves the stream open. */
  async function writePart(ref: string, data: Buffer, bytes: number): Promise<WriteStream> {
    const s = new WriteStream(h.client, ns);
    await s.send({ action: WriteAction.STAT, ref, total: data.length, expected: sha256(data) });
    for (let off = 0; off < bytes; off += 1 << 20) {
      await s.send({
        action: WriteAction.WRITE,
        offset: off,
        data: data.subarray(off, Math.min(bytes, off + (1 << 20))),
      });
    }
    return s;
  }

  /** Resumes `ref` with a new stream: its offset must be `from`; writes the rest and commits. */
  async function resume(ref: string, data: Buffer, from: number): Promise<void> {
    const s = new WriteStream(h.client, ns);
    try {
      const st = await s.send({ action: WriteAction.STAT, ref, total: data.length, expected: sha256(data) });
      expect(st.offset).toBe(from);
      for (let off = st.offset; off < data.length; off += 1 << 20) {
        await s.send({ action: WriteAction.WRITE, offset: off, data: data.subarray(off, off + (1 << 20)) });
      }
      const done = await s.send({
        action: WriteAction.COMMIT,
        offset: data.length,
        total: data.length,
        expected: sha256(data),
      });
      expect(done.digest).toBe(sha256(data));
    } finally {
      s.end();
    }
    expect(sha256(await readAll(h.client, ns, sha256(data)))).toBe(sha256(data));
  }

  it('a client that cancels mid-write frees the ref at once; the same ref resumes from its offset', async () => {
    const data = randomBytes(5 << 20);
    const ref = `cancel-${Date.now()}`;
    const s = await writePart(ref, data, 3 << 20);
    s.cancel();
    // No retry loop: within a moment of the cancel the lock must be free (a held lock answers unavailable).
    await new Promise((r) => setTimeout(r, 100));
    await resume(ref, data, 3 << 20);
  });

  it('a client that goes silent fails with deadline_exceeded naming the stream; the ref resumes', async () => {
    const data = randomBytes(3 << 20);
    const ref = `silent-${Date.now()}`;
    const s = await writePart(ref, data, 1 << 20);
    const started = Date.now();
    const err = await failsWith(s.next(), grpc.status.DEADLINE_EXCEEDED);
    expect(err.details).toMatch(/content write: client stream made no progress for 0\.400s/);
    expect(Date.now() - started).toBeLessThan(stallMs + 1_500);
    await resume(ref, data, 1 << 20);
  });

  it('a client that half-closes without committing leaves the ingest resumable', async () => {
    const data = randomBytes(2 << 20);
    const ref = `halfclose-${Date.now()}`;
    const s = await writePart(ref, data, 1 << 20);
    s.end();
    await new Promise((r) => setTimeout(r, 100));
    const st = await new Promise<{ status?: { offset: number } }>((resolve, reject) =>
      h.client.status({ ref }, md(ns), (e, r) => (e ? reject(e) : resolve(r))),
    );
    expect(st.status?.offset).toBe(1 << 20);
    await resume(ref, data, 1 << 20);
  });
});
