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

  it('worker: two streams both waiting for slots both go on (small chunks fill the ring)', async () => {
    const d = workerDigester(['sha256', 'sha256']);
    // 16 KiB pieces, as an S3 stream delivers them: each takes a whole slot, so both streams soon wait.
    const feed = async (i: number, b: Buffer): Promise<void> => {
      for (let off = 0; off < b.length; off += 16 * 1024) await d.update(i, b.subarray(off, off + 16 * 1024));
    };
    const a = data.subarray(0, 4 * 1024 * 1024);
    const finished = Promise.all([feed(0, a), feed(1, other)]).then(() => d.digests());
    const stuck = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('a stream never got a slot')), 20_000),
    );
    expect(await Promise.race([finished, stuck])).toEqual([hex('sha256', a), hex('sha256', other)]);
  });

  it('worker: close() releases an unfinished digester', async () => {
    const d = workerDigester(['sha256']);
    await d.update(0, data.subarray(0, 5 * 1024 * 1024));
    await d.close();
  });
});
