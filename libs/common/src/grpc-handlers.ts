import { constants as http2 } from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import { LeaseHeader, NamespaceHeader, type RequestContext } from './context.js';
import { toGrpcError } from './grpc-status.js';
import type { Logger } from './log.js';
import { defaultStallMs, StallGuard } from './stall.js';

type ServerCall = { metadata: grpc.Metadata; on(event: 'cancelled', fn: () => void): unknown; getPath(): string };

/**
 * The RequestContext of a server call, from its metadata; the signal aborts on cancellation until `settle` is
 * called. grpc-js also reports 'cancelled' when a client resets a stream it has finished with (ctr does after
 * most calls); aborting then would only build a DOMException nobody reads, on every call.
 * The signal and the logger are made on first use: most calls never touch them, and at thousands of small
 * calls a second (`ctr images ls`) their construction showed in profiles. A class, for the same reason: an
 * object literal with getters costs V8 about 1 µs to build.
 */
class ServerCallContext implements RequestContext {
  readonly namespace: string | undefined;
  readonly lease: string | undefined;
  /** Set once the client cancelled before the call settled. */
  cancelled = false;
  private live = true;
  private controller: AbortController | undefined;
  private childLog: Logger | undefined;

  constructor(
    private readonly call: ServerCall,
    private readonly parentLog: Logger,
  ) {
    this.namespace = firstString(call.metadata, NamespaceHeader);
    this.lease = firstString(call.metadata, LeaseHeader);
    call.on('cancelled', () => this.cancel());
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.cancelled) this.controller.abort(canceledByClient());
    }
    return this.controller.signal;
  }

  /** The method's full path, `/containerd.services.content.v1.Content/Read`. */
  get rpc(): string {
    return this.call.getPath();
  }

  get log(): Logger {
    this.childLog ??= this.parentLog.child({
      rpc: this.call.getPath(),
      ...(this.namespace ? { namespace: this.namespace } : {}),
    });
    return this.childLog;
  }

  /** The call answered: a cancellation from now on is the client being done with it. */
  settle(): void {
    this.live = false;
  }

  private cancel(): void {
    if (!this.live) return;
    this.cancelled = true;
    this.controller?.abort(canceledByClient());
  }
}

const canceledByClient = (): DOMException => new DOMException('client canceled the call', 'AbortError');

function firstString(md: grpc.Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return typeof v === 'string' ? v : v === undefined ? undefined : v.toString();
}

function logFailure(ctx: RequestContext, e: unknown, status: { code: number; details: string }): void {
  // Client errors are routine; only unclassified and internal failures deserve a log line.
  if (status.code === 2 || status.code === 13) ctx.log.error('rpc failed', { code: status.code, err: e });
  else ctx.log.debug('rpc failed', { code: status.code, details: status.details });
}

export interface HandlerOptions {
  /**
   * How long a streaming call may wait for its client to read what it was sent (`stall-timeout-ms`; <= 0 or
   * unset: the default). Past it the call fails with deadline_exceeded and its source is closed.
   */
  readonly stallMs?: number;
}

/**
 * Adapters that turn async domain functions into grpc-js handlers and map every error in one place.
 * Build once per service with its logger.
 */
export function handlers(
  log: Logger,
  opts: HandlerOptions = {},
): {
  unary<Req, Res>(fn: (req: Req, ctx: RequestContext) => Promise<Res>): grpc.handleUnaryCall<Req, Res>;
  /** `fn` may also resolve a plain iterable: what is already in memory is written without an await per item. */
  serverStream<Req, Res>(
    fn: (req: Req, ctx: RequestContext) => Responses<Res> | Promise<Responses<Res>>,
  ): grpc.handleServerStreamingCall<Req, Res>;
  bidi<Req, Res>(
    fn: (reqs: AsyncIterable<Req>, ctx: RequestContext) => AsyncIterable<Res>,
  ): grpc.handleBidiStreamingCall<Req, Res>;
} {
  const stallMs = opts.stallMs !== undefined && opts.stallMs > 0 ? opts.stallMs : defaultStallMs;
  return {
    unary: (fn) => (call, callback) => {
      const ctx = new ServerCallContext(call, log);
      fn(call.request, ctx).then(
        (res) => {
          ctx.settle();
          callback(null, res);
        },
        (e: unknown) => {
          ctx.settle();
          const status = toGrpcError(e);
          logFailure(ctx, e, status);
          callback(status);
        },
      );
    },
    serverStream: (fn) => (call) => {
      const ctx = new ServerCallContext(call, log);
      void pump(fn(call.request, ctx), call, ctx, stallMs).finally(() => ctx.settle());
    },
    bidi: (fn) => (call) => {
      const ctx = new ServerCallContext(call, log);
      // Iterating a Readable to its end destroys it by default, and a destroyed grpc-js call never sends its
      // status: a client that half-closes would wait forever for the end of the call.
      const requests = call.iterator({ destroyOnReturn: false }) as AsyncIterable<never>;
      void pump(fn(requests, ctx), call, ctx, stallMs).finally(() => ctx.settle());
    },
  };
}

/** What a streaming handler answers with. */
export type Responses<Res> = AsyncIterable<Res> | Iterable<Res>;

/** What a stalled response stream is reported as: the client holds the call open but reads nothing. */
export const clientReadStage = 'sending responses (the client stopped reading)';

type ResponseStream = grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;

/**
 * Writes every item with backpressure, then ends the call; a failure ends it with the mapped status. Never rejects.
 * A client that stops reading would hold the source (an open file, an S3 socket) for as long as it keeps the
 * connection: a wait for 'drain' longer than `stallMs` fails the call with deadline_exceeded, closing the source.
 */
async function pump<Res>(
  source: Responses<Res> | Promise<Responses<Res>>,
  call: grpc.ServerWritableStream<unknown, Res> | grpc.ServerDuplexStream<unknown, Res>,
  ctx: ServerCallContext,
  stallMs: number,
): Promise<void> {
  // Made on the first full buffer only: most calls never wait for their client.
  let guard: StallGuard | undefined;
  const drained = (): Promise<void> => {
    guard ??= new StallGuard(ctx.rpc, stallMs, ctx.log, ctx.signal);
    return guard.wait(waitDrain(call, guard.signal), clientReadStage);
  };
  try {
    const items = source instanceof Promise ? await source : source;
    // Leaving either loop by a throw returns the source's iterator: a generator runs its `finally`, which
    // closes what it reads from.
    if (Symbol.iterator in items) {
      for (const item of items) {
        if (ctx.cancelled) return;
        if (!call.write(item)) await drained();
      }
    } else {
      for await (const item of items) {
        if (ctx.cancelled) return;
        if (!call.write(item)) await drained();
      }
    }
    call.end();
  } catch (e) {
    if (ctx.cancelled) return;
    const status = toGrpcError(e);
    logFailure(ctx, e, status);
    // grpc-js turns an 'error' event on a server stream into the trailing status and ends the call.
    call.emit('error', Object.assign(new Error(status.details), status));
    // The guard aborted and the client did not cancel: it stalled.
    if (guard?.signal.aborted) resetUnlessClosed(call, stallMs);
  } finally {
    guard?.close();
  }
}

/**
 * The trailing status of a call whose client stopped reading waits behind the responses that fill the client's
 * flow-control window, that is until the client reads again. If the call is still open a moment later, reset its
 * HTTP/2 stream (RST_STREAM CANCEL): the client sees the call cancelled and the server drops what it buffered.
 */
function resetUnlessClosed(call: ResponseStream, stallMs: number): void {
  const stream = http2StreamOf(call);
  if (!stream || stream.closed) return;
  const timer = setTimeout(
    () => {
      if (!stream.closed) stream.close(http2.NGHTTP2_CANCEL);
    },
    Math.min(stallMs, 1_000),
  );
  timer.unref();
  stream.once('close', () => clearTimeout(timer));
}

interface Http2StreamLike {
  readonly closed: boolean;
  close(code: number): void;
  once(event: 'close', fn: () => void): unknown;
}

/**
 * The HTTP/2 stream under a grpc-js server call. grpc-js exposes none; its calls hold it as `call.stream`
 * (BaseServerInterceptingCall), behind `nextCall` for each interceptor. services/content/test/read-stall.test.ts
 * fails if a grpc-js upgrade moves it.
 */
function http2StreamOf(call: ResponseStream): Http2StreamLike | undefined {
  let c: unknown = (call as unknown as { call?: unknown }).call;
  for (let depth = 0; c && typeof c === 'object' && depth < 16; depth++) {
    const stream = (c as { stream?: unknown }).stream;
    if (typeof stream === 'object' && stream !== null && 'rstCode' in stream && 'close' in stream) {
      return stream as unknown as Http2StreamLike;
    }
    c = (c as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

function waitDrain(stream: NodeJS.EventEmitter, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    stream.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}
