import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { zstd } from '../../test/test-support/fixtures.js';
import { type Compression, decompress } from './media-types.js';

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of source) chunks.push(c);
  return Buffer.concat(chunks);
}

describe('decompress', () => {
  const data = randomBytes(3000);
  const cases: Array<[Compression, Buffer]> = [
    ['zstd', zstd(data)],
    ['gzip', gzipSync(data)],
    ['none', data],
  ];

  it.each(cases)('%s: every byte, even when reading starts after the decompressor has exited', async (c, blob) => {
    const out = decompress(once(blob), c);
    // A small input is decompressed (and the zstd process gone) before the consumer asks for anything; Node
    // then drops a child's unread stdout, which once left this waiting forever.
    await sleep(300);
    expect((await collect(out)).equals(data)).toBe(true);
  });

  it('hands on about 1 MiB at a time, not all it holds ahead (16 MiB joined into one buffer per chunk)', async () => {
    const big = randomBytes(24 * 1024 * 1024);
    const out = decompress(once(gzipSync(big, { level: 1 })), 'gzip');
    await sleep(500); // the decompressor runs ahead of this consumer and fills its queue
    const sizes: number[] = [];
    const chunks: Buffer[] = [];
    for await (const c of out) {
      sizes.push(c.length);
      chunks.push(c);
    }
    expect(Buffer.concat(chunks).equals(big)).toBe(true);
    expect(Math.max(...sizes)).toBeLessThan(2 * 1024 * 1024);
  });

  it('reports a corrupt zstd stream as an error, not a hang', async () => {
    const out = decompress(once(Buffer.from('not zstd at all')), 'zstd');
    await sleep(300);
    await expect(collect(out)).rejects.toThrow(/zstd/);
  });
});
