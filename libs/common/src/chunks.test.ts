import { describe, expect, it } from 'vitest';
import { coalesce } from './chunks.js';

async function* from(sizes: readonly number[]): AsyncGenerator<Buffer> {
  let n = 0;
  for (const size of sizes) yield Buffer.from(Array.from({ length: size }, () => n++ % 251));
}

async function pieces(source: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const b of source) out.push(b);
  return out;
}

describe('coalesce', () => {
  it('joins small chunks into pieces of at least the minimum, the last one excepted, bytes unchanged', async () => {
    const sizes = [10, 20, 5, 40, 3, 3, 100, 7];
    const got = await pieces(coalesce(from(sizes), 32));
    expect(got.map((b) => b.length)).toEqual([35, 40, 106, 7]);
    expect(Buffer.concat(got).equals(Buffer.concat(await pieces(from(sizes))))).toBe(true);
  });

  it('passes a large chunk on as it is (not copied)', async () => {
    const big = Buffer.alloc(64, 1);
    async function* src(): AsyncGenerator<Buffer> {
      yield big;
      yield Buffer.alloc(4, 2);
    }
    const got = await pieces(coalesce(src(), 32));
    expect(got[0]).toBe(big);
    expect(got.map((b) => b.length)).toEqual([64, 4]);
  });

  it('yields nothing for an empty source', async () => {
    expect(await pieces(coalesce(from([]), 32))).toEqual([]);
  });
});
