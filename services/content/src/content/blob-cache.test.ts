import { describe, expect, it } from 'vitest';
import { BlobCache } from './blob-cache.js';

describe('BlobCache', () => {
  it('keeps small blobs within its budget, least recently used out first', () => {
    const c = new BlobCache(10, 20);
    c.set('a', Buffer.alloc(8));
    c.set('b', Buffer.alloc(8));
    expect(c.get('a')?.length).toBe(8); // a is now the most recent
    c.set('c', Buffer.alloc(8)); // 24 bytes > 20: b goes
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBeDefined();
    expect(c.get('c')).toBeDefined();
    expect(c.size).toEqual({ blobs: 2, bytes: 16 });
  });

  it('never keeps a blob over its size limit', () => {
    const c = new BlobCache(10, 100);
    c.set('big', Buffer.alloc(11));
    expect(c.get('big')).toBeUndefined();
    expect(c.size).toEqual({ blobs: 0, bytes: 0 });
  });
});
