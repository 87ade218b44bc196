import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { coalesce } from '@berth/common/chunks';
import { type RequestContext, withSignal } from '@berth/common/context';
import { invalidArgument, notImplemented } from '@berth/common/errors';
import { type Mount, readonlyMounts, withTempMount } from '@berth/common/mount';
import { type Descriptor, MediaType } from '@berth/common/oci';
import { stallGuard } from '@berth/common/stall';
import type { ContentClient } from '@berth/content/client';
import { diffLayer } from './changes.js';

/** The label containerd puts on a compressed layer blob: the digest of its uncompressed tar (the diffID). */
export const uncompressedLabel = 'containerd.io/uncompressed';

export interface DiffOptions {
  /** '' means containerd's default, gzip. */
  readonly mediaType: string;
  /** The content ingest ref; '' means a fresh one. */
  readonly ref: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** Computes the layer that turns `lower` into `upper` and writes it to content. */
export interface Differ {
  diff(ctx: RequestContext, lower: readonly Mount[], upper: readonly Mount[], opts: DiffOptions): Promise<Descriptor>;
}

export interface DifferDeps {
  readonly content: ContentClient;
  readonly tmpRoot: string;
  /** How long the content store may leave a piece of the layer unanswered; 0 = the default. */
  readonly stallMs?: number;
}

/** Pieces sent to content are gathered up to this size: one Write round trip per MiB, not per file. */
const writeBytes = 1 << 20;

/** containerd's uniqueRef: time plus a little randomness, unique enough for an ingest. */
const uniqueRef = (): string => `${process.hrtime.bigint()}-${randomBytes(3).toString('base64url')}`;

export function createDiffer(deps: DifferDeps): Differ {
  return {
    async diff(ctx, lower, upper, opts) {
      const mediaType = opts.mediaType === '' ? MediaType.ociLayerGzip : opts.mediaType;
      if (mediaType !== MediaType.ociLayer && mediaType !== MediaType.ociLayerGzip) {
        throw notImplemented(`unsupported diff media type: ${mediaType}`);
      }
      if (lower.length === 0) throw invalidArgument('left mounts must not be empty');
      if (upper.length === 0) throw invalidArgument('right mounts must not be empty');
      const guard = stallGuard(ctx, 'diff', deps.stallMs ?? 0);
      const gctx = withSignal(ctx, guard.signal);
      const ref = opts.ref === '' ? uniqueRef() : opts.ref;
      // Streamed: tar → diffID hash → gzip → blob hash → Content.Write, one piece at a time (bounded memory).
      const write = async (lowerRoot: string, upperRoot: string): Promise<Descriptor> => {
        const diffHash = createHash('sha256');
        const blobHash = createHash('sha256');
        let size = 0;
        const walk = diffLayer(lowerRoot, upperRoot, guard.signal);
        const layer = tap(walk, (b) => diffHash.update(b));
        const compressed = mediaType === MediaType.ociLayerGzip ? gzipped(layer, guard.signal) : layer;
        const blob = tap(coalesce(compressed, writeBytes), (b) => {
          blobHash.update(b);
          size += b.length;
        });
        let digest = '';
        try {
          await deps.content.write(
            gctx,
            ref,
            blob,
            () => {
              digest = `sha256:${blobHash.digest('hex')}`;
              const diffId = `sha256:${diffHash.digest('hex')}`;
              return { expected: digest, labels: { ...opts.labels, [uncompressedLabel]: diffId } };
            },
            (p, stage) => guard.wait(p, stage),
          );
        } finally {
          // The compressor may still be pulling from the walk: it must be over (its files closed) before the
          // trees are unmounted. Its return waits for the step in progress.
          await walk.return(undefined).catch(() => undefined);
        }
        return { mediaType, digest, size };
      };
      try {
        return await withTempMount(readonlyMounts(lower), deps.tmpRoot, (lowerRoot) =>
          withTempMount(readonlyMounts(upper), deps.tmpRoot, (upperRoot) => write(lowerRoot, upperRoot)),
        );
      } catch (e) {
        if (guard.signal.aborted) throw guard.failure();
        throw e;
      } finally {
        guard.close();
      }
    },
  };
}

async function* tap(source: AsyncIterable<Buffer>, fn: (b: Buffer) => void): AsyncGenerator<Buffer> {
  for await (const b of source) {
    fn(b);
    yield b;
  }
}

/** gzip of `source`, streamed; ends the compressor when `signal` aborts or the consumer stops. */
async function* gzipped(source: AsyncIterable<Buffer>, signal: AbortSignal): AsyncGenerator<Buffer> {
  const gz = createGzip({ chunkSize: 256 * 1024 });
  const fed = pipeline(Readable.from(source, { highWaterMark: 1 }), gz, { signal });
  // Seen through the iteration below (pipeline destroys gz with the error); this only keeps it handled.
  fed.catch(() => undefined);
  try {
    for await (const chunk of gz as AsyncIterable<Buffer>) yield chunk;
    await fed;
  } finally {
    gz.destroy();
  }
}
