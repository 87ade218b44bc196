import type { CallContext } from '@berth/common/context';
import { isAlreadyExists } from '@berth/common/errors';
import { dial, invoke, outgoingMetadata, streamOf } from '@berth/common/grpc-client';
import { fromGrpcError } from '@berth/common/grpc-status';
import {
  ContentClient as ContentGrpcClient,
  type Info,
  WriteAction,
} from '@berth/proto/containerd/services/content/v1/content';
import { type IngestOptions, type IngestResult, type IngestSource, ingest } from './ingest.js';
import { openWriteCall } from './write-call.js';

/** Reading and writing whole blobs, what a service that streams layers (diff) asks of content. */
export interface ContentClient {
  /** The blob's bytes in order; not_found when it is not in the namespace. */
  read(ctx: CallContext, digest: string): AsyncIterable<Buffer>;
  /**
   * Streams a blob under `ref` (from offset 0: an earlier ingest of the ref is restarted) and commits it as
   * `commit()` says once `data` has ended (the digest and labels are known only then); a blob that already
   * exists counts as written (as containerd's content.WriteBlob does). Each piece waits for the store's answer
   * before the next is sent, so at most one piece is in flight. `wait` bounds every wait (a stall guard).
   */
  write(
    ctx: CallContext,
    ref: string,
    data: AsyncIterable<Buffer>,
    commit: () => { expected: string; labels: Readonly<Record<string, string>> },
    wait?: <T>(p: Promise<T>, stage: string) => Promise<T>,
  ): Promise<void>;
  /** Content.List: the blobs of the namespace matching any of `filters` (containerd's filter syntax). */
  list(ctx: CallContext, filters: readonly string[]): Promise<Info[]>;
  /** Content.Update of (only) these labels, each by its own field path (`labels.<key>`). */
  updateLabels(ctx: CallContext, digest: string, labels: Readonly<Record<string, string>>): Promise<void>;
  /** A blob of known descriptor, resumable and retried, from a source that can be reopened: the pull's ingest. */
  ingest(ctx: CallContext, source: IngestSource, opts: IngestOptions): Promise<IngestResult>;
  close(): void;
}

/** `containerd.services.content.v1.Content` at `address` (mTLS when configured). */
export function remoteContent(address: string): ContentClient {
  return contentOver(dial(ContentGrpcClient, address));
}

/** A ContentClient over an existing gRPC client; `close` closes it. */
export function contentOver(client: ContentGrpcClient): ContentClient {
  return {
    async *read(ctx, digest) {
      const call = client.read({ digest, offset: 0, size: 0 }, outgoingMetadata(ctx));
      for await (const msg of streamOf(call, ctx.signal)) yield msg.data;
    },

    async list(ctx, filters) {
      const out: Info[] = [];
      const call = client.list({ filters: [...filters] }, outgoingMetadata(ctx));
      for await (const msg of streamOf(call, ctx.signal)) out.push(...msg.info);
      return out;
    },

    async write(ctx, ref, data, commit, wait) {
      const w = openWriteCall(client, ctx);
      const ended = (): unknown => fromGrpcError(new Error('content write stream ended early'));
      const base = { ref, total: 0, expected: '', labels: {}, data: Buffer.alloc(0), offset: 0 };
      let offset = 0;
      try {
        for await (const piece of data) {
          if (piece.length === 0) continue;
          w.call.write({ ...base, action: WriteAction.WRITE, offset, data: piece });
          await w.next(ended, wait);
          offset += piece.length;
        }
        const { expected, labels } = commit();
        w.call.write({ ...base, action: WriteAction.COMMIT, offset, total: offset, expected, labels: { ...labels } });
        await w.next(ended, wait);
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
      } finally {
        w.release();
        w.call.end();
        w.call.cancel();
      }
    },

    async updateLabels(ctx, digest, labels) {
      await invoke(
        (md, o, cb) =>
          client.update(
            {
              info: { digest, size: 0, labels: { ...labels }, createdAt: undefined, updatedAt: undefined },
              updateMask: Object.keys(labels).map((k) => `labels.${k}`),
            },
            md,
            o,
            cb,
          ),
        ctx,
      );
    },

    ingest: (ctx, source, opts) => ingest({ content: client }, ctx, source, opts),

    close: () => client.close(),
  };
}
