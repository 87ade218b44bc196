import { createHash } from 'node:crypto';
import { coalesce } from '@berth/common/chunks';
import { type RequestContext, withSignal } from '@berth/common/context';
import { ErrorCode, invalidArgument, ServiceError } from '@berth/common/errors';
import { type Descriptor, MediaType } from '@berth/common/oci';
import { stallGuard } from '@berth/common/stall';
import type { ContentClient } from '@berth/content/client';
import { type AppliedLayer, applyLayer } from '../archive/apply.js';
import { compressionOf, decompress } from './media-types.js';

/** Where and how a layer is written: a directory, its whiteout form and its lower layers (nearest first). */
export interface ExtractTarget {
  readonly root: string;
  readonly whiteouts: 'overlay' | 'delete';
  readonly parents: readonly string[];
}

export interface Extracted extends AppliedLayer {
  /** The uncompressed layer: `…layer.v1.tar`, digest = diffID. */
  readonly diff: Descriptor;
}

/**
 * Streams the layer `desc` from content, decompresses it and writes it into `target`, checking the blob's
 * digest and size as it goes. not_implemented for unknown media types; invalid_argument for layers that are
 * malformed or would write outside the target; data_loss when the store returns other bytes.
 */
export type Extract = (
  ctx: RequestContext,
  desc: Descriptor,
  target: ExtractTarget,
  /**
   * The blob's bytes from elsewhere than a content read (as they are being written). `verified`: whoever
   * hands them over checks their digest (a Write's commit) and fails the stream otherwise, so the blob is
   * not hashed a second time here.
   */
  source?: { readonly bytes: AsyncIterable<Buffer>; readonly verified: boolean },
) => Promise<Extracted>;

export interface ExtractDeps {
  /** Where blobs are read from; none where every call hands over its bytes (`source`). */
  readonly content?: ContentClient;
  /** How long any stage (content read, decompressor, tar) may make no progress; 0 = the default. */
  readonly stallMs?: number;
}

async function* tap(source: AsyncIterable<Buffer>, fn: (b: Buffer) => void): AsyncGenerator<Buffer> {
  for await (const b of source) {
    fn(b);
    yield b;
  }
}

/** Blob bytes are handed to the digest and the decompressor in pieces of at least this. */
const blobPieceBytes = 1 << 20;

function parseDigest(digest: string): { algorithm: string; hex: string } {
  const m = /^(sha256|sha384|sha512):([a-f0-9]+)$/.exec(digest);
  if (!m) throw invalidArgument(`invalid digest ${JSON.stringify(digest)}`);
  const [, algorithm = '', hex = ''] = m;
  return { algorithm, hex };
}

/** The blob `digest` read from `content`; internal when there is none to read from (see `ExtractDeps.content`). */
export function readBlob(
  content: ContentClient | undefined,
  ctx: RequestContext,
  digest: string,
): AsyncIterable<Buffer> {
  if (!content) throw new ServiceError(ErrorCode.Internal, `apply ${digest}: no content store to read from`);
  return content.read(ctx, digest);
}

export function createExtract(deps: ExtractDeps): Extract {
  return async (callCtx, desc, target, source) => {
    const compression = compressionOf(desc.mediaType);
    const blob = parseDigest(desc.digest);
    // Every stage waits through the guard: a stage that stops fails the call naming it, and a client that
    // goes away ends every stage (tar and zstd killed, content read cancelled) at once.
    const guard = stallGuard(callCtx, `apply ${desc.digest}`, deps.stallMs ?? 0);
    const ctx = withSignal(callCtx, guard.signal);
    // An uncompressed layer is its own diff: its sha256 blob digest is the diffID, computed once.
    const sameStream = compression === 'none' && blob.algorithm === 'sha256';
    // On the calling thread: in berthd that is already an extraction thread (extract-thread.ts). Bytes handed
    // over by a Write whose commit checks their digest are not hashed a second time.
    const blobHash = source?.verified === true ? undefined : createHash(blob.algorithm);
    const diffHash = sameStream ? undefined : createHash('sha256');
    let blobSize = 0;
    let size = 0;
    const read = guard.iterate(source?.bytes ?? readBlob(deps.content, ctx, desc.digest), 'content read');
    const blobBytes = tap(coalesce(read, blobPieceBytes), (b) => {
      blobSize += b.length;
      blobHash?.update(b);
    });
    const layer = sameStream
      ? tap(blobBytes, (b) => {
          size += b.length;
        })
      : tap(guard.iterate(decompress(blobBytes, compression, guard.signal), `decompress (${compression})`), (b) => {
          size += b.length;
          diffHash?.update(b);
        });
    let applied: AppliedLayer;
    try {
      applied = await applyLayer(layer, { ...target, log: ctx.log, signal: guard.signal, watch: guard });
    } catch (e) {
      // Whatever a stage failed with once the guard gave up, the call fails with the guard's reason.
      if (guard.signal.aborted) throw guard.failure();
      throw e;
    } finally {
      guard.close();
    }
    const got = blobHash ? blobHash.digest('hex') : blob.hex;
    const diffHex = diffHash ? diffHash.digest('hex') : got;
    // The blob was checked when written; checking again here catches a store that returns other bytes.
    if (got !== blob.hex || (desc.size > 0 && blobSize !== desc.size)) {
      throw new ServiceError(
        ErrorCode.DataLoss,
        `content ${desc.digest}: read ${blobSize} bytes with digest ${blob.algorithm}:${got}, expected ${desc.size} bytes`,
      );
    }
    return { ...applied, diff: { mediaType: MediaType.ociLayer, digest: `sha256:${diffHex}`, size } };
  };
}
