import { constants, createReadStream } from 'node:fs';
import { chmod, type FileHandle, mkdir, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
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
  /** Blob directories (`blobs/<algorithm>`) made or seen: a commit makes its directory only once. */
  const blobDirs = new Set<string>();

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
      const made = await mkdir(dir, { recursive: true, mode: 0o700 });
      const data = join(dir, 'data');
      // Read-write at explicit positions, created if absent: append mode would ignore the positions that
      // truncate-and-rewrite needs.
      const fh = await open(data, constants.O_RDWR | constants.O_CREAT);
      // A directory made just now holds no bytes yet.
      const size = made === undefined ? (await fh.stat()).size : 0;
      return fsIngest(fh, data, dir, size, blobPath, blobDirs);
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
    async *listBlobs(skip) {
      for (const algorithm of await entries(join(root, 'blobs'))) {
        for (const hex of await entries(join(root, 'blobs', algorithm))) {
          const key = `${algorithm}:${hex}`;
          if (skip?.(key)) continue;
          const at = await mtime(join(root, 'blobs', algorithm, hex));
          if (at) yield { key, modifiedAt: at };
        }
      }
    },
    async *listIngests(skip) {
      for (const key of await entries(join(root, 'ingest'))) {
        if (skip?.(key)) continue;
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
  blobDirs: Set<string>,
): Ingest {
  let position = size;
  let open = true;
  /** Nothing written since the last fsync. */
  let synced = false;
  const closeOnce = async (): Promise<void> => {
    if (!open) return;
    open = false;
    await fh.close();
  };
  const sync = async (): Promise<void> => {
    if (synced) return;
    await fh.sync();
    synced = true;
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
      synced = false;
      let done = 0;
      while (done < buf.length) {
        const { bytesWritten } = await fh.write(buf, done, buf.length - done, position);
        done += bytesWritten;
        position += bytesWritten;
      }
    },
    async truncate() {
      synced = false;
      await fh.truncate(0);
      position = 0;
    },
    flush: sync,
    async commit(digest) {
      // Nothing left to sync after flush; still here for a caller that did not flush.
      await sync();
      await closeOnce();
      const target = blobPath(digest);
      const parent = join(target, '..');
      if (!blobDirs.has(parent)) {
        await mkdir(parent, { recursive: true, mode: 0o755 });
        blobDirs.add(parent);
      }
      try {
        await stat(target);
        await rm(dir, { recursive: true, force: true });
        return 'existed';
      } catch (e) {
        if (!hasErrno(e, 'ENOENT')) throw e;
      }
      try {
        await rename(data, target);
      } catch (e) {
        // Its directory went away (removed by hand): make it again.
        if (!hasErrno(e, 'ENOENT') || !blobDirs.delete(parent)) throw e;
        await mkdir(parent, { recursive: true, mode: 0o755 });
        blobDirs.add(parent);
        await rename(data, target);
      }
      await Promise.all([chmod(target, 0o444), syncDir(parent)]);
      // Empty now: one rmdir, unless something else was left in it.
      await rmdir(dir).catch(() => rm(dir, { recursive: true, force: true }));
      return 'created';
    },
    async suspend() {
      if (!open) return;
      await sync();
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
