import { describe, expect, it } from 'vitest';
import { byteQueue } from './byte-queue.js';

const collect = async (it: AsyncIterable<Buffer>): Promise<string> => {
  let out = '';
  for await (const b of it) out += b.toString();
  return out;
};

describe('byteQueue', () => {
  it('hands chunks over in order, holds the writer beyond its limit, and ends with the commit', async () => {
    const q = byteQueue(4);
    const read = collect(q.source);
    expect(q.push(Buffer.from('abc'))).toBeUndefined();
    const held = q.push(Buffer.from('def'));
    expect(held, 'over the limit: the writer waits').toBeInstanceOf(Promise);
    await held;
    q.push(Buffer.from('g'));
    q.end(true);
    expect(await read).toBe('abcdefg');
  });

  it('throws to the reader when the write ends uncommitted', async () => {
    const q = byteQueue(1024);
    q.push(Buffer.from('x'));
    q.end(false);
    await expect(collect(q.source)).rejects.toThrow('the write ended before it was committed');
  });

  it('a reader that stops, or never comes, releases a waiting writer and drops later pushes', async () => {
    const q = byteQueue(2);
    const held = q.push(Buffer.from('abcd'));
    expect(held).toBeInstanceOf(Promise);
    q.close();
    await held;
    expect(q.push(Buffer.from('more'))).toBeUndefined();

    const r = byteQueue(2);
    const it = r.source[Symbol.asyncIterator]();
    r.push(Buffer.from('a'));
    expect((await it.next()).value?.toString()).toBe('a');
    await it.return?.();
    expect(r.push(Buffer.from('abcdef'))).toBeUndefined();
  });
});
