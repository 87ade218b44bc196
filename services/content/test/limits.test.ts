import { tempDir } from '@berth/testing/tmp';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failsWith, type Harness, startHarness, WriteStream, writeBlob } from './harness.js';

describe('content: open ingests are capped', () => {
  const dir = tempDir('berth-content-limits-');
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ kind: 'fs', root: dir.path }, undefined, undefined, { maxOpenIngests: 3 });
  });
  afterAll(async () => {
    await h?.close();
    await dir.remove();
  });

  it('refuses a writer beyond the cap with RESOURCE_EXHAUSTED, and accepts one again when a writer closes', async () => {
    const open = [0, 1, 2].map(() => new WriteStream(h.client, 'limits'));
    for (const [i, s] of open.entries()) expect((await s.send({ ref: `held-${i}` })).offset).toBe(0);

    const extra = new WriteStream(h.client, 'limits');
    const err = await failsWith(extra.send({ ref: 'one-too-many' }), grpc.status.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/too many open ingests \(3\)/);

    open[0]?.end();
    // The server releases the writer once it sees the half-close; then a new ingest goes through.
    let done: Awaited<ReturnType<typeof writeBlob>> | undefined;
    for (let i = 0; i < 50 && !done; i++) {
      done = await writeBlob(h.client, 'limits', 'after', Buffer.from('hello')).catch(async (e: grpc.ServiceError) => {
        if (e.code !== grpc.status.RESOURCE_EXHAUSTED) throw e;
        await new Promise((r) => setTimeout(r, 20));
        return undefined;
      });
    }
    expect(done?.offset).toBe(5);
    for (const s of open.slice(1)) s.end();
  });
});
