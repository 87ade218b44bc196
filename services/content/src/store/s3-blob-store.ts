import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { coalesce } from '@berth/common/chunks';
import { notFound } from '@berth/common/errors';
import { Client } from 'minio';
import type { BlobStore, Ingest } from './blob-store.js';
import { again } from './reconnect.js';

export interface S3Options {
  readonly endPoint: string;
  readonly port: number;
  readonly useSSL: boolean;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
  readonly bucket: string;
  /** Key prefix for everything this store writes, e.g. `berth/`. */
  readonly prefix: string;
  /** Bytes buffered before a staged part is uploaded, and the size of the final multipart parts. Min 5 MiB. */
  readonly partSize: number;
}

const minPart = 5 * 1024 * 1024;
/** Reads are handed on in pieces of this size (the last excepted). */
const readPieceBytes = 1 << 20;

/**
 * Blobs in an S3 bucket through the minio client.
 *   <prefix>blobs/<algorithm>/<hex>          committed blobs
 *   <prefix>ingests/<key>/<10-digit seq>      staged parts of an ingest, as plain objects
 *
 * Why staged objects and not one multipart upload per ingest: bytes of an unfinished multipart upload
 * cannot be read back, so after a restart the writer could not re-hash the prefix it must resume from;
 * and resuming a multipart upload needs ListMultipartUploads, which s3rver (our test server) lacks.
 * Staged parts are listable (the resume offset is their total) and readable (the prefix can be hashed).
 * Commit assembles them at the digest's key: one part is copied server-side; several are streamed through
 * this process into a multipart upload whose id we hold ourselves, so its parts all meet S3's 5 MiB
 * minimum whatever sizes the staged parts had. The blob key only ever receives a complete object.
 */
export async function createS3BlobStore(opts: S3Options): Promise<BlobStore> {
  const client = new Client({
    endPoint: opts.endPoint,
    port: opts.port,
    useSSL: opts.useSSL,
    accessKey: opts.accessKey,
    secretKey: opts.secretKey,
    region: opts.region,
    // Our own pool: sockets idle in a pool shared with other clients may have been closed by the server.
    transportAgent: opts.useSSL ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true }),
  });
  const bucket = opts.bucket;
  const partSize = Math.max(minPart, opts.partSize);
  await ensureBucket(client, bucket, opts.region);

  const blobKey = (digest: string): string => `${opts.prefix}blobs/${digest.replace(':', '/')}`;
  const stagePrefix = (key: string): string => `${opts.prefix}ingests/${key}/`;

  const staged = async (key: string): Promise<Array<{ name: string; size: number }>> => {
    const out: Array<{ name: string; size: number }> = [];
    for await (const item of client.listObjectsV2(bucket, stagePrefix(key), true)) {
      const { name, size } = item as { name?: string; size?: number };
      if (name !== undefined) out.push({ name, size: size ?? 0 });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  };
  const removeAll = async (names: readonly string[]): Promise<void> => {
    for (let i = 0; i < names.length; i += 1000)
      await again(() => client.removeObjects(bucket, names.slice(i, i + 1000)));
  };
  const statBlob = async (digest: string): Promise<number | undefined> => {
    try {
      return (await again(() => client.statObject(bucket, blobKey(digest)))).size;
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw e;
    }
  };
  async function* readObject(name: string): AsyncIterable<Buffer> {
    const stream = await again(() => client.getObject(bucket, name));
    for await (const chunk of stream) yield chunk as Buffer;
  }

  return {
    kind: 's3',
    stat: statBlob,
    async *read(digest, offset, length) {
      if (length <= 0) return;
      let stream: Awaited<ReturnType<typeof client.getPartialObject>>;
      try {
        stream = await again(() => client.getPartialObject(bucket, blobKey(digest), offset, length));
      } catch (e) {
        if (isMissing(e)) throw notFound(`content digest ${digest}`, e);
        throw e;
      }
      // In 1 MiB pieces, as the filesystem store reads and containerd sends them: the HTTP body's chunks
      // (16–64 KiB) would each become a Read message, and the reader pays per message.
      yield* coalesce(stream as AsyncIterable<Buffer>, readPieceBytes);
    },
    async delete(digest) {
      await again(() => client.removeObject(bucket, blobKey(digest)));
    },
    async openIngest(key) {
      const parts = await staged(key);
      const size = parts.reduce((n, p) => n + p.size, 0);
      let seq = parts.length === 0 ? 0 : Number(parts[parts.length - 1]?.name.slice(-10)) + 1;
      let names = parts.map((p) => p.name);
      let pending: Buffer[] = [];
      let pendingBytes = 0;

      const flush = async (): Promise<void> => {
        if (pendingBytes === 0) return;
        const body = Buffer.concat(pending, pendingBytes);
        const name = `${stagePrefix(key)}${String(seq).padStart(10, '0')}`;
        await again(() => client.putObject(bucket, name, body, body.length));
        seq++;
        names.push(name);
        pending = [];
        pendingBytes = 0;
      };

      const ingest: Ingest = {
        size,
        async *readPrefix() {
          for (const p of parts) yield* readObject(p.name);
        },
        async write(data) {
          // Copied: the caller may reuse its buffer once this resolves.
          pending.push(Buffer.from(data));
          pendingBytes += data.length;
          if (pendingBytes >= partSize) await flush();
        },
        async truncate() {
          pending = [];
          pendingBytes = 0;
          await removeAll(names);
          names = [];
          seq = 0;
        },
        async commit(digest, total) {
          await flush();
          const target = blobKey(digest);
          if ((await statBlob(digest)) !== undefined) {
            await removeAll(names);
            return 'existed';
          }
          if (names.length === 0) {
            await again(() => client.putObject(bucket, target, Buffer.alloc(0), 0));
          } else if (names.length === 1 && total <= 5 * 1024 ** 3) {
            await again(() => client.copyObject(bucket, target, `/${bucket}/${names[0] ?? ''}`));
          } else {
            await assemble(target);
          }
          await removeAll(names);
          return 'created';
        },
        suspend: flush,
      };

      /** Streams the staged parts, in order, into a multipart upload at `target`. */
      const assemble = async (target: string): Promise<void> => {
        const uploadId = await client.initiateNewMultipartUpload(bucket, target, {});
        try {
          const etags: Array<{ part: number; etag: string }> = [];
          let buf: Buffer[] = [];
          let bytes = 0;
          const upload = async (): Promise<void> => {
            const part = etags.length + 1;
            const body = Buffer.concat(buf, bytes);
            const r = await client.uploadPart(
              {
                bucketName: bucket,
                objectName: target,
                uploadID: uploadId,
                partNumber: part,
                headers: { 'Content-Length': body.length },
              },
              body,
            );
            etags.push({ part, etag: r.etag });
            buf = [];
            bytes = 0;
          };
          for (const name of names) {
            for await (const chunk of readObject(name)) {
              buf.push(chunk);
              bytes += chunk.length;
              if (bytes >= partSize) await upload();
            }
          }
          if (bytes > 0 || etags.length === 0) await upload();
          await client.completeMultipartUpload(bucket, target, uploadId, etags);
        } catch (e) {
          await client.abortMultipartUpload(bucket, target, uploadId).catch(() => undefined);
          throw e;
        }
      };
      return ingest;
    },
    async ingestSize(key) {
      const parts = await staged(key);
      return parts.length === 0 ? undefined : parts.reduce((n, p) => n + p.size, 0);
    },
    async removeIngest(key) {
      await removeAll((await staged(key)).map((p) => p.name));
    },
    async *listBlobs(skip) {
      const prefix = `${opts.prefix}blobs/`;
      for await (const item of client.listObjectsV2(bucket, prefix, true)) {
        const { name, lastModified } = item as { name?: string; lastModified?: Date };
        if (name === undefined) continue;
        const rest = name.slice(prefix.length);
        const slash = rest.indexOf('/');
        if (slash <= 0) continue;
        const key = `${rest.slice(0, slash)}:${rest.slice(slash + 1)}`;
        if (!skip?.(key)) yield { key, modifiedAt: lastModified ?? new Date(0) };
      }
    },
    async *listIngests(skip) {
      const prefix = `${opts.prefix}ingests/`;
      const newest = new Map<string, Date>();
      for await (const item of client.listObjectsV2(bucket, prefix, true)) {
        const { name, lastModified } = item as { name?: string; lastModified?: Date };
        if (name === undefined) continue;
        const key = name.slice(prefix.length).split('/')[0] ?? '';
        const at = lastModified ?? new Date(0);
        const seen = newest.get(key);
        if (key !== '' && (!seen || seen < at)) newest.set(key, at);
      }
      for (const [key, modifiedAt] of newest) if (!skip?.(key)) yield { key, modifiedAt };
    },
    async abortStaleUploads(olderThan) {
      const stale: Array<{ key: string; uploadId: string }> = [];
      try {
        for await (const item of client.listIncompleteUploads(bucket, opts.prefix, true)) {
          const u = item as { key?: string; uploadId?: string; initiated?: Date };
          if (u.key && u.uploadId && u.initiated && u.initiated < olderThan)
            stale.push({ key: u.key, uploadId: u.uploadId });
        }
      } catch (e) {
        // A server without ListMultipartUploads (s3rver) keeps no uploads to abort.
        if (codeOf(e) === 'NotImplemented') return 0;
        throw e;
      }
      let aborted = 0;
      for (const u of stale) {
        await client.abortMultipartUpload(bucket, u.key, u.uploadId);
        aborted++;
      }
      return aborted;
    },
    async close() {},
  };
}

function codeOf(e: unknown): unknown {
  return typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
}

function isMissing(e: unknown): boolean {
  const code = codeOf(e);
  return code === 'NoSuchKey' || code === 'NotFound' || code === 'NoSuchObject';
}

/**
 * Creates the bucket unless it exists. Replicas starting together race here: the loser of a concurrent
 * create gets BucketAlreadyOwnedByYou (or BucketAlreadyExists from some servers) and finds the bucket there.
 */
async function ensureBucket(client: Client, bucket: string, region: string | undefined): Promise<void> {
  if (await client.bucketExists(bucket)) return;
  try {
    await client.makeBucket(bucket, region);
  } catch (e) {
    if (!(await client.bucketExists(bucket))) throw e;
  }
}
