import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { inlineDigester } from './digester.js';

const hex = (algorithm: string, b: Buffer): string => createHash(algorithm).update(b).digest('hex');

describe('digesters', () => {
  // 40 MiB in uneven pieces.
  const data = randomBytes(40 * 1024 * 1024 + 123);
  const other = randomBytes(3 * 1024 * 1024 + 7);
  const sizes = [1, 511, 65536, 3 * 1024 * 1024 + 5, 1 << 20, 777_777];

  it('digests two interleaved streams like createHash', async () => {
    const d = inlineDigester(['sha512', 'sha256']);
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
});
