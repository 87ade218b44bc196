import { createHash, type Hash } from 'node:crypto';
import type { RequestContext } from '@berth/common/context';
import { ErrorCode, invalidArgument, ServiceError } from '@berth/common/errors';
import { applyLayer } from '../archive/apply.js';
import type { ContentStore } from '../content/content-client.js';
import { type Mount, overlayUpper, withTempMount } from '../mount/mount.js';
import { compressionOf, decompress, MediaType } from './media-types.js';

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

export interface Applier {
  /**
   * Streams the layer `desc` from content, decompresses it and applies it onto `mounts`. Returns the
   * uncompressed layer (`…layer.v1.tar`, digest = diffID, size). not_implemented for unknown media
   * types; invalid_argument for layers that are malformed or would write outside the mounts.
   */
  apply(ctx: RequestContext, desc: Descriptor, mounts: readonly Mount[]): Promise<Descriptor>;
}

export interface ApplierDeps {
  readonly content: ContentStore;
  /** Where temporary mount points are made. */
  readonly tmpRoot: string;
}

async function* tap(source: AsyncIterable<Buffer>, fn: (b: Buffer) => void): AsyncGenerator<Buffer> {
  for await (const b of source) {
    fn(b);
    yield b;
  }
}

function hashFor(digest: string): { hash: Hash; algorithm: string; hex: string } {
  const m = /^(sha256|sha384|sha512):([a-f0-9]+)$/.exec(digest);
  if (!m) throw invalidArgument(`invalid digest ${JSON.stringify(digest)}`);
  const [, algorithm = '', hex = ''] = m;
  return { hash: createHash(algorithm), algorithm, hex };
}

export function createApplier(deps: ApplierDeps): Applier {
  return {
    async apply(ctx, desc, mounts) {
      if (mounts.length === 0) throw invalidArgument('mounts must not be empty');
      const compression = compressionOf(desc.mediaType);
      const blob = hashFor(desc.digest);
      let blobSize = 0;
      const diffId = createHash('sha256');
      let size = 0;
      const layer = tap(
        decompress(
          tap(deps.content.read(ctx, desc.digest), (b) => {
            blob.hash.update(b);
            blobSize += b.length;
          }),
          compression,
        ),
        (b) => {
          diffId.update(b);
          size += b.length;
        },
      );
      const upper = overlayUpper(mounts);
      if (upper) {
        await applyLayer(layer, {
          root: upper.upper,
          whiteouts: 'overlay',
          parents: upper.lowers,
          log: ctx.log,
          signal: ctx.signal,
        });
      } else {
        await withTempMount(mounts, deps.tmpRoot, (dir) =>
          applyLayer(layer, { root: dir, whiteouts: 'delete', parents: [], log: ctx.log, signal: ctx.signal }),
        );
      }
      // The blob was checked when written; checking again here catches a store that returns other bytes.
      const got = blob.hash.digest('hex');
      if (got !== blob.hex || (desc.size > 0 && blobSize !== desc.size)) {
        throw new ServiceError(
          ErrorCode.DataLoss,
          `content ${desc.digest}: read ${blobSize} bytes with digest ${blob.algorithm}:${got}, expected ${desc.size} bytes`,
        );
      }
      return { mediaType: MediaType.layer, digest: `sha256:${diffId.digest('hex')}`, size };
    },
  };
}
