import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
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

  it('opens a new ingest empty, and an existing one with the bytes it kept', async () => {
    const fresh = await store.openIngest('k2');
    expect(fresh.size).toBe(0);
    await fresh.write(Buffer.from('kept'));
    await fresh.suspend();
    const again = await store.openIngest('k2');
    expect(again.size).toBe(4);
    await again.suspend();
    await store.removeIngest('k2');
  });

  it('places a blob even when its directory was removed since the last commit', async () => {
    const put = async (key: string, text: string): Promise<string> => {
      const data = Buffer.from(text);
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      const ingest = await store.openIngest(key);
      await ingest.write(data);
      expect(await ingest.commit(digest, data.length)).toBe('created');
      return digest;
    };
    await put('k3', 'first');
    await rm(join(root, 'blobs', 'sha256'), { recursive: true, force: true });
    const second = await put('k4', 'second');
    expect(await store.stat(second)).toBe(6);
  });

  it('lists blobs and ingests without looking up the ones skip accepts', async () => {
    const data = Buffer.from('listed');
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const ingest = await store.openIngest('k5');
    await ingest.write(data);
    await ingest.commit(digest, data.length);
    await (await store.openIngest('k6')).suspend();
    // Entries a lookup fails on (a symlink loop): listed only if they are looked up.
    const loop = `sha256:${'0'.repeat(64)}`;
    await symlink(loop.slice(7), join(root, 'blobs', 'sha256', loop.slice(7)));
    await symlink('k7', join(root, 'ingest', 'k7'));
    const list = async (it: AsyncIterable<{ key: string }>): Promise<string[]> => {
      const keys: string[] = [];
      for await (const o of it) keys.push(o.key);
      return keys.sort();
    };
    await expect(list(store.listBlobs())).rejects.toThrow(/ELOOP/);
    const blobs = await list(store.listBlobs((key) => key === loop));
    expect(blobs).toContain(digest);
    expect(blobs).not.toContain(loop);
    expect(await list(store.listBlobs((key) => key === loop || key === digest))).not.toContain(digest);
    await expect(list(store.listIngests())).rejects.toThrow(/ELOOP/);
    expect(await list(store.listIngests((key) => key === 'k7'))).toEqual(['k6']);
  });
});
