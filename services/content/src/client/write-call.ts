import type { CallContext } from '@berth/common/context';
import { outgoingMetadata } from '@berth/common/grpc-client';
import { fromGrpcError } from '@berth/common/grpc-status';
import type {
  ContentClient as ContentGrpcClient,
  WriteContentRequest,
  WriteContentResponse,
} from '@berth/proto/containerd/services/content/v1/content';
import type * as grpc from '@grpc/grpc-js';

export type { CallContext } from '@berth/common/context';

/**
 * One Content.Write bidi call, the part both writers share: requests go out on `call`, responses come back in
 * order through `next`, failures as ServiceErrors; the call is cancelled when the context aborts.
 */
export interface WriteCall {
  readonly call: grpc.ClientDuplexStream<WriteContentRequest, WriteContentResponse>;
  readonly responses: AsyncIterator<WriteContentResponse>;
  /**
   * The next response. A failed call rejects with its error mapped (`fromGrpcError`); a stream the server
   * ended rejects with `ended()`. `wait` bounds the wait (a stall guard).
   */
  next(ended: () => unknown, wait?: <T>(p: Promise<T>, stage: string) => Promise<T>): Promise<WriteContentResponse>;
  /** Stops following the context's signal; the caller ends or cancels the call. */
  release(): void;
}

export function openWriteCall(client: ContentGrpcClient, ctx: CallContext): WriteCall {
  const call = client.write(outgoingMetadata(ctx));
  // Failures are read from the response stream; an 'error' emitted before it is first read (the call
  // cancelled while the first piece is still being made) must not go unheard, which would end the process.
  call.on('error', () => undefined);
  const cancel = (): void => call.cancel();
  ctx.signal.addEventListener('abort', cancel, { once: true });
  const responses = (call as AsyncIterable<WriteContentResponse>)[Symbol.asyncIterator]();
  return {
    call,
    responses,
    async next(ended, wait = (p) => p) {
      let r: IteratorResult<WriteContentResponse>;
      try {
        r = await wait(responses.next(), 'content write');
      } catch (e) {
        throw fromGrpcError(e);
      }
      if (r.done) throw ended();
      return r.value;
    },
    release: () => ctx.signal.removeEventListener('abort', cancel),
  };
}
