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
   * Writes a blob under `ref` and commits it as `expected` with `labels`; a blob that already exists counts
   * as written (as containerd's content.WriteBlob does).
   */
  write(
    ctx: RequestContext,
    ref: string,
    data: Buffer,
    expected: string,
    labels: Readonly<Record<string, string>>,
  ): Promise<void>;
  close(): void;
}

/** Talks to `containerd.services.content.v1.Content` at `address`. */
export function contentClient(address: string): ContentStore {
  const client = new ContentClient(dialTarget(address), channelCredentialsFor(address), channelOptions);
  return {
    async *read(ctx, digest) {
      const call = client.read({ digest, offset: 0, size: 0 }, outgoingMetadata(ctx));
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

    async write(ctx, ref, data, expected, labels) {
      const call = client.write(outgoingMetadata(ctx));
      const responses = (call as AsyncIterable<WriteContentResponse>)[Symbol.asyncIterator]();
      const next = async (): Promise<WriteContentResponse> => {
        try {
          const r = await responses.next();
          if (r.done) throw new Error('content write stream ended early');
          return r.value;
        } catch (e) {
          throw fromGrpcError(e);
        }
      };
      const base = { ref, total: data.length, expected, labels: {}, data: Buffer.alloc(0), offset: 0 };
      try {
        call.write({ ...base, action: WriteAction.STAT });
        const status = await next();
        const chunk = 1 << 20;
        for (let offset = status.offset; offset < data.length; offset += chunk) {
          call.write({ ...base, action: WriteAction.WRITE, offset, data: data.subarray(offset, offset + chunk) });
          await next();
        }
        call.write({ ...base, action: WriteAction.COMMIT, offset: data.length, labels: { ...labels } });
        await next();
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
      } finally {
        call.end();
        call.cancel();
      }
    },

    close: () => client.close(),
  };
}
