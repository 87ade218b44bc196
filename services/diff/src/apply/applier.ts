import type { RequestContext } from '@berth/common/context';
import { ErrorCode, invalidArgument, ServiceError } from '@berth/common/errors';
import { applyLayer } from '../archive/apply.js';
import type { ContentStore } from '../content/content-client.js';
import { type Mount, overlayUpper, withTempMount } from '../mount/mount.js';
import { inlineDigester, workerDigester } from './digester.js';
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

async function* tap(
  source: AsyncIterable<Buffer>,
  fn: (b: Buffer) => Promise<void> | undefined,
): AsyncGenerator<Buffer> {
  for await (const b of source) {
    const wait = fn(b);
    if (wait) await wait;
    yield b;
  }
}

function parseDigest(digest: string): { algorithm: string; hex: string } {
  const m = /^(sha256|sha384|sha512):([a-f0-9]+)$/.exec(digest);
  if (!m) throw invalidArgument(`invalid digest ${JSON.stringify(digest)}`);
  const [, algorithm = '', hex = ''] = m;
  return { algorithm, hex };
}

/** Below this, starting a digest thread costs more than it saves. */
const workerDigestFrom = 4 * 1024 * 1024;

export function createApplier(deps: ApplierDeps): Applier {
  return {
    async apply(ctx, desc, mounts) {
      if (mounts.length === 0) throw invalidArgument('mounts must not be empty');
      const compression = compressionOf(desc.mediaType);
      const blob = parseDigest(desc.digest);
      // An uncompressed layer is its own diff: its sha256 blob digest is the diffID, computed once.
      const sameStream = compression === 'none' && blob.algorithm === 'sha256';
      const algorithms = sameStream ? [blob.algorithm] : [blob.algorithm, 'sha256'];
      const digester = desc.size >= workerDigestFrom ? workerDigester(algorithms) : inlineDigester(algorithms);
      let blobSize = 0;
      let size = 0;
      const blobBytes = tap(deps.content.read(ctx, desc.digest), (b) => {
        blobSize += b.length;
        return digester.update(0, b);
      });
      const layer = sameStream
        ? tap(blobBytes, (b) => {
            size += b.length;
            return undefined;
          })
        : tap(decompress(blobBytes, compression), (b) => {
            size += b.length;
            return digester.update(1, b);
          });
      let digests: string[];
      try {
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
        digests = await digester.digests();
      } catch (e) {
        await digester.close();
        throw e;
      }
      const [got = '', diffHex = got] = digests;
      // The blob was checked when written; checking again here catches a store that returns other bytes.
      if (got !== blob.hex || (desc.size > 0 && blobSize !== desc.size)) {
        throw new ServiceError(
          ErrorCode.DataLoss,
          `content ${desc.digest}: read ${blobSize} bytes with digest ${blob.algorithm}:${got}, expected ${desc.size} bytes`,
        );
      }
      return { mediaType: MediaType.layer, digest: `sha256:${diffHex}`, size };
    },
  };
}
