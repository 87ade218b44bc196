import type { RequestContext } from '@berth/common/context';
import { isAlreadyExists } from '@berth/common/errors';
import { outgoingMetadata } from '@berth/common/grpc-client';
import { channelOptions, dialTarget } from '@berth/common/grpc-server';
import { fromGrpcError } from '@berth/common/grpc-status';
import { channelCredentialsFor } from '@berth/common/tls/credentials';
import {
  ContentClient,
  WriteAction,
  type WriteContentResponse,
} from '@berth/proto/containerd/services/content/v1/content';

/** The slice of the content service the differ uses. */
export interface ContentStore {
  /** The blob's bytes in order; not_found when it is not in the namespace. */
  read(ctx: RequestContext, digest: string): AsyncIterable<Buffer>;
  /**
   * Streams a blob under `ref` (from offset 0: an earlier ingest of the ref is restarted) and commits it as
   * `commit()` says once `data` has ended (the digest and labels are known only then); a blob that already
   * exists counts as written (as containerd's content.WriteBlob does). Each piece waits for the store's answer
   * before the next is sent, so at most one piece is in flight. `wait` bounds every wait (a stall guard).
   */
  write(
    ctx: RequestContext,
    ref: string,
    data: AsyncIterable<Buffer>,
    commit: () => { expected: string; labels: Readonly<Record<string, string>> },
    wait?: <T>(p: Promise<T>, stage: string) => Promise<T>,
  ): Promise<void>;
  close(): void;
}

/** Talks to `containerd.services.content.v1.Content` at `address`. */
export function contentClient(address: string): ContentStore {
  const client = new ContentClient(dialTarget(address), channelCredentialsFor(address), channelOptions);
  return {
    async *read(ctx, digest) {
      const call = client.read({ digest, offset: 0, size: 0 }, outgoingMetadata(ctx));
      call.on('error', () => undefined);
      const cancel = (): void => call.cancel();
      ctx.signal.addEventListener('abort', cancel, { once: true });
      try {
        for await (const msg of call as AsyncIterable<{ data: Buffer }>) yield msg.data;
      } catch (e) {
        throw fromGrpcError(e);
      } finally {
        ctx.signal.removeEventListener('abort', cancel);
        call.cancel();
      }
    },

    async write(ctx, ref, data, commit, wait = (p) => p) {
      const call = client.write(outgoingMetadata(ctx));
      // Failures are read from the response stream; an 'error' emitted before it is first read (the call
      // cancelled while the first piece is still being made) must not go unheard, which would end the process.
      call.on('error', () => undefined);
      const cancel = (): void => call.cancel();
      ctx.signal.addEventListener('abort', cancel, { once: true });
      const responses = (call as AsyncIterable<WriteContentResponse>)[Symbol.asyncIterator]();
      const next = async (): Promise<WriteContentResponse> => {
        try {
          const r = await wait(responses.next(), 'content write');
          if (r.done) throw new Error('content write stream ended early');
          return r.value;
        } catch (e) {
          throw fromGrpcError(e);
        }
      };
      const base = { ref, total: 0, expected: '', labels: {}, data: Buffer.alloc(0), offset: 0 };
      let offset = 0;
      try {
        for await (const piece of data) {
          if (piece.length === 0) continue;
          call.write({ ...base, action: WriteAction.WRITE, offset, data: piece });
          await next();
          offset += piece.length;
        }
        const { expected, labels } = commit();
        call.write({ ...base, action: WriteAction.COMMIT, offset, total: offset, expected, labels: { ...labels } });
        await next();
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
      } finally {
        ctx.signal.removeEventListener('abort', cancel);
        call.end();
        call.cancel();
      }
    },

    close: () => client.close(),
  };
}
