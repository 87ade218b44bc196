import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { inlineDigester, workerDigester } from './digester.js';

const hex = (algorithm: string, b: Buffer): string => createHash(algorithm).update(b).digest('hex');

describe('digesters', () => {
  // 40 MiB in uneven pieces, some larger than a slot, more than the ring holds: exercises waiting for slots.
  const data = randomBytes(40 * 1024 * 1024 + 123);
  const other = randomBytes(3 * 1024 * 1024 + 7);
  const sizes = [1, 511, 65536, 3 * 1024 * 1024 + 5, 1 << 20, 777_777];

  for (const [name, make] of [
    ['inline', inlineDigester],
    ['worker', workerDigester],
  ] as const) {
    it(`${name}: digests two interleaved streams like createHash`, async () => {
      const d = make(['sha512', 'sha256']);
      let off = 0;
      let k = 0;
      while (off < data.length) {
        const size = sizes[k++ % sizes.length] ?? 1;
        const wait = d.update(0, data.subarray(off, off + size));
        if (wait) await wait;
        if (k % 7 === 0) await d.update(1, other.subarray(0, 0));
        off += size;
      }
      await d.update(1, other);
      expect(await d.digests()).toEqual([hex('sha512', data), hex('sha256', other)]);
    });
  }

  it('worker: two concurrent 8 MiB updates both finish (Diff.Apply feeds blob and layer at once)', async () => {
    const d = workerDigester(['sha256', 'sha256']);
    const [a0, a1, b0, b1] = [0, 1, 2, 3].map(() => randomBytes(8 * 1024 * 1024));
    // The first chunk of each stream fills the ring without waiting; the second ones both wait for slots.
    await Promise.all([d.update(0, a0 as Buffer), d.update(1, b0 as Buffer)]);
    const both = Promise.all([d.update(0, a1 as Buffer), d.update(1, b1 as Buffer)]);
    const stalled = new Promise<string>((resolve) => setTimeout(() => resolve('stalled'), 5_000).unref());
    expect(await Promise.race([both.then(() => 'done'), stalled])).toBe('done');
    expect(await d.digests()).toEqual([
      hex('sha256', Buffer.concat([a0 as Buffer, a1 as Buffer])),
      hex('sha256', Buffer.concat([b0 as Buffer, b1 as Buffer])),
    ]);
  });

  it('worker: many concurrent updates on many streams all finish in order', { timeout: 15_000 }, async () => {
    const streams = 5;
    const d = workerDigester(Array.from({ length: streams }, () => 'sha256'));
    const parts = Array.from({ length: streams }, () => [randomBytes(3 << 20), randomBytes(5 << 20)]);
    await Promise.all(
      parts.map(async (ps, i) => {
        for (const p of ps) await d.update(i, p);
      }),
    );
    expect(await d.digests()).toEqual(parts.map((ps) => hex('sha256', Buffer.concat(ps))));
  });

  it('worker: close() releases an unfinished digester', async () => {
    const d = workerDigester(['sha256']);
    await d.update(0, data.subarray(0, 5 * 1024 * 1024));
    await d.close();
  });
});
