import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlobStore } from './blob-store.js';
import { createFsBlobStore } from './fs-blob-store.js';

describe('fs ingest', () => {
  let root: string;
  let store: BlobStore;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'fs-blob-store-'));
    store = createFsBlobStore(root);
  });
  afterAll(async () => rm(root, { recursive: true, force: true }));

  it('flushed before commit, places the bytes at the digest and removes the ingest', async () => {
    const data = Buffer.from('flushed bytes');
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const ingest = await store.openIngest('k1');
    await ingest.write(data);
    await ingest.flush?.();
    // Flushing places nothing: the blob appears at commit only.
    expect(await store.stat(digest)).toBeUndefined();
    expect(await ingest.commit(digest, data.length)).toBe('created');
    expect(await store.stat(digest)).toBe(data.length);
    expect(await readdir(join(root, 'ingest'))).toEqual([]);
  });
});
