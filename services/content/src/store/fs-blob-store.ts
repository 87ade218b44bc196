import { createReadStream } from 'node:fs';
import { chmod, type FileHandle, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { hasErrno, notFound } from '@berth/common/errors';
import type { BlobStore, Ingest } from './blob-store.js';

/**
 * Reads up to this size are one positioned read into a buffer of their size. A read stream would allocate
 * its 1 MiB chunk buffer even for a 500-byte manifest, and small reads are most reads (index, manifest and
 * config of every image listed or run).
 */
const smallRead = 1 << 20;

async function readRange(path: string, digest: string, offset: number, length: number): Promise<Buffer> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if (hasErrno(e, 'ENOENT')) throw notFound(`content digest ${digest}`, e);
    throw e;
  }
  try {
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === length ? buf : buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/**
 * Blobs on the local filesystem, laid out like containerd's local store:
 *   <root>/blobs/<algorithm>/<hex>   committed, read-only
 *   <root>/ingest/<key>/data         bytes of an ingest
 * An ingest is committed by fsync then rename(2) into blobs/, which is atomic: a blob path never holds a
 * partial file. The ingest and blob trees must be on one filesystem (they share <root>).
 */
export function createFsBlobStore(root: string): BlobStore {
  const blobPath = (digest: string): string => {
    const i = digest.indexOf(':');
    return join(root, 'blobs', digest.slice(0, i), digest.slice(i + 1));
  };
  const ingestDir = (key: string): string => join(root, 'ingest', key);

  return {
    kind: 'fs',
    async stat(digest) {
      try {
        return (await stat(blobPath(digest))).size;
      } catch (e) {
        if (hasErrno(e, 'ENOENT')) return undefined;
        throw e;
      }
    },
    async *read(digest, offset, length, signal) {
      if (length <= 0) return;
      if (length <= smallRead) {
        yield await readRange(blobPath(digest), digest, offset, length);
        return;
      }
      const stream = createReadStream(blobPath(digest), {
        start: offset,
        end: offset + length - 1,
        highWaterMark: 1 << 20,
        ...(signal ? { signal } : {}),
      });
      try {
        for await (const chunk of stream) yield chunk as Buffer;
      } catch (e) {
        if (hasErrno(e, 'ENOENT')) throw notFound(`content digest ${digest}`, e);
        throw e;
      } finally {
        stream.destroy();
      }
    },
    async delete(digest) {
      await rm(blobPath(digest), { force: true });
    },
    async openIngest(key) {
      const dir = ingestDir(key);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const data = join(dir, 'data');
      // Append mode would ignore the explicit positions that truncate-and-rewrite needs.
      const fh = await open(data, 'a')
        .then((h) => h.close())
        .then(() => open(data, 'r+'));
      const size = (await fh.stat()).size;
      return fsIngest(fh, data, dir, size, blobPath);
    },
    async ingestSize(key) {
      try {
        return (await stat(join(ingestDir(key), 'data'))).size;
      } catch (e) {
        if (hasErrno(e, 'ENOENT')) return undefined;
        throw e;
      }
    },
    async removeIngest(key) {
      await rm(ingestDir(key), { recursive: true, force: true });
    },
    async *listBlobs() {
      for (const algorithm of await entries(join(root, 'blobs'))) {
        for (const hex of await entries(join(root, 'blobs', algorithm))) {
          const at = await mtime(join(root, 'blobs', algorithm, hex));
          if (at) yield { key: `${algorithm}:${hex}`, modifiedAt: at };
        }
      }
    },
    async *listIngests() {
      for (const key of await entries(join(root, 'ingest'))) {
        const at = (await mtime(join(ingestDir(key), 'data'))) ?? (await mtime(ingestDir(key)));
        if (at) yield { key, modifiedAt: at };
      }
    },
    async close() {},
  };
}

async function entries(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if (hasErrno(e, 'ENOENT')) return [];
    throw e;
  }
}

async function mtime(path: string): Promise<Date | undefined> {
  try {
    return (await stat(path)).mtime;
  } catch (e) {
    if (hasErrno(e, 'ENOENT')) return undefined;
    throw e;
  }
}

function fsIngest(
  fh: FileHandle,
  data: string,
  dir: string,
  size: number,
  blobPath: (digest: string) => string,
): Ingest {
  let position = size;
  let open = true;
  const closeOnce = async (): Promise<void> => {
    if (!open) return;
    open = false;
    await fh.close();
  };
  return {
    size,
    async *readPrefix() {
      if (size === 0) return;
      const stream = createReadStream(data, { start: 0, end: size - 1, highWaterMark: 1 << 20 });
      try {
        for await (const chunk of stream) yield chunk as Buffer;
      } finally {
        stream.destroy();
      }
    },
    async write(buf) {
      let done = 0;
      while (done < buf.length) {
        const { bytesWritten } = await fh.write(buf, done, buf.length - done, position);
        done += bytesWritten;
        position += bytesWritten;
      }
    },
    async truncate() {
      await fh.truncate(0);
      position = 0;
    },
    async flush() {
      await fh.sync();
    },
    async commit(digest) {
      // Cheap after flush (no dirty pages left); still here for a caller that did not flush.
      await fh.sync();
      await closeOnce();
      const target = blobPath(digest);
      await mkdir(join(target, '..'), { recursive: true, mode: 0o755 });
      try {
        await stat(target);
        await rm(dir, { recursive: true, force: true });
        return 'existed';
      } catch (e) {
        if (!hasErrno(e, 'ENOENT')) throw e;
      }
      await rename(data, target);
      await chmod(target, 0o444);
      await syncDir(join(target, '..'));
      await rm(dir, { recursive: true, force: true });
      return 'created';
    },
    async suspend() {
      if (!open) return;
      await fh.sync();
      await closeOnce();
    },
  };
}

/** Makes a rename durable: the directory entry is only on disk once the directory itself is synced. */
async function syncDir(path: string): Promise<void> {
  const d = await open(path, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
