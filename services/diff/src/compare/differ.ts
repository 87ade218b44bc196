import { createHash, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import type { RequestContext } from '@berth/common/context';
import { invalidArgument, notImplemented } from '@berth/common/errors';
import type { Descriptor } from '../apply/applier.js';
import { MediaType } from '../apply/media-types.js';
import type { ContentStore } from '../content/content-client.js';
import { type Mount, readonlyMounts, withTempMount } from '../mount/mount.js';
import { writeDiff } from './changes.js';

const gzip = promisify(gzipCb);

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
  readonly content: ContentStore;
  readonly tmpRoot: string;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** containerd's uniqueRef: time plus a little randomness, unique enough for an ingest. */
const uniqueRef = (): string => `${process.hrtime.bigint()}-${randomBytes(3).toString('base64url')}`;

export function createDiffer(deps: DifferDeps): Differ {
  return {
    async diff(ctx, lower, upper, opts) {
      const mediaType = opts.mediaType === '' ? MediaType.layerGzip : opts.mediaType;
      if (mediaType !== MediaType.layer && mediaType !== MediaType.layerGzip) {
        throw notImplemented(`unsupported diff media type: ${mediaType}`);
      }
      if (lower.length === 0) throw invalidArgument('left mounts must not be empty');
      if (upper.length === 0) throw invalidArgument('right mounts must not be empty');
      const layer = await withTempMount(readonlyMounts(lower), deps.tmpRoot, (lowerRoot) =>
        withTempMount(readonlyMounts(upper), deps.tmpRoot, (upperRoot) => writeDiff(lowerRoot, upperRoot, ctx.signal)),
      );
      const diffId = sha256(layer);
      const blob = mediaType === MediaType.layerGzip ? await gzip(layer) : layer;
      const digest = sha256(blob);
      await deps.content.write(ctx, opts.ref === '' ? uniqueRef() : opts.ref, blob, digest, {
        ...opts.labels,
        [uncompressedLabel]: diffId,
      });
      return { mediaType, digest, size: blob.length };
    },
  };
}
