import type * as grpc from '@grpc/grpc-js';
import { LeaseHeader, NamespaceHeader, type RequestContext } from './context.js';
import { toGrpcError } from './grpc-status.js';
import type { Logger } from './log.js';

/**
 * Builds the RequestContext of a server call from its metadata; the signal aborts on cancellation until
 * `settled` is called. grpc-js also reports 'cancelled' when a client resets a stream it has finished with
 * (ctr does after most calls); aborting then would only build a DOMException nobody reads, on every call.
 * The signal and the logger are made on first use: most calls never touch them, and at thousands of small
 * calls a second (`ctr images ls`) their construction showed in profiles.
 */
function callContext(
  call: { metadata: grpc.Metadata; on(event: 'cancelled', fn: () => void): unknown; getPath(): string },
  log: Logger,
): { ctx: RequestContext; settled(): void; cancelled(): boolean } {
  let controller: AbortController | undefined;
  let childLog: Logger | undefined;
  let cancelled = false;
  let live = true;
  const reason = (): DOMException => new DOMException('client canceled the call', 'AbortError');
  call.on('cancelled', () => {
    if (!live) return;
    cancelled = true;
    controller?.abort(reason());
  });
  const ns = firstString(call.metadata, NamespaceHeader);
  const ctx: RequestContext = {
    namespace: ns,
    lease: firstString(call.metadata, LeaseHeader),
    get signal() {
      if (!controller) {
        controller = new AbortController();
        if (cancelled) controller.abort(reason());
      }
      return controller.signal;
    },
    get log() {
      childLog ??= log.child({ rpc: call.getPath(), ...(ns ? { namespace: ns } : {}) });
      return childLog;
    },
  };
  return { ctx, settled: () => void (live = false), cancelled: () => cancelled };
}

function firstString(md: grpc.Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return typeof v === 'string' ? v : v === undefined ? undefined : v.toString();
}

function logFailure(ctx: RequestContext, e: unknown, status: { code: number; details: string }): void {
  // Client errors are routine; only unclassified and internal failures deserve a log line.
  if (status.code === 2 || status.code === 13) ctx.log.error('rpc failed', { code: status.code, err: e });
  else ctx.log.debug('rpc failed', { code: status.code, details: status.details });
}

/**
 * Adapters that turn async domain functions into grpc-js handlers and map every error in one place.
 * Build once per service with its logger.
 */
export function handlers(log: Logger): {
  unary<Req, Res>(fn: (req: Req, ctx: RequestContext) => Promise<Res>): grpc.handleUnaryCall<Req, Res>;
  serverStream<Req, Res>(
    fn: (req: Req, ctx: RequestContext) => AsyncIterable<Res>,
  ): grpc.handleServerStreamingCall<Req, Res>;
  bidi<Req, Res>(
    fn: (reqs: AsyncIterable<Req>, ctx: RequestContext) => AsyncIterable<Res>,
  ): grpc.handleBidiStreamingCall<Req, Res>;
} {
  return {
    unary: (fn) => (call, callback) => {
      const { ctx, settled } = callContext(call, log);
      fn(call.request, ctx).then(
        (res) => {
          settled();
          callback(null, res);
        },
        (e: unknown) => {
          settled();
          const status = toGrpcError(e);
          logFailure(ctx, e, status);
          callback(status);
        },
      );
    },
    serverStream: (fn) => (call) => {
      const { ctx, settled, cancelled } = callContext(call, log);
      void pump(fn(call.request, ctx), call, ctx, cancelled).finally(settled);
    },
    bidi: (fn) => (call) => {
      const { ctx, settled, cancelled } = callContext(call, log);
      // Iterating a Readable to its end destroys it by default, and a destroyed grpc-js call never sends its
      // status: a client that half-closes would wait forever for the end of the call.
      const requests = call.iterator({ destroyOnReturn: false }) as AsyncIterable<never>;
      void pump(fn(requests, ctx), call, ctx, cancelled).finally(settled);
    },
  };
}

/** Writes every item with backpressure, then ends the call; a failure ends it with the mapped status. Never rejects. */
async function pump<Res>(
  items: AsyncIterable<Res>,
  call: grpc.ServerWritableStream<unknown, Res> | grpc.ServerDuplexStream<unknown, Res>,
  ctx: RequestContext,
  cancelled: () => boolean,
): Promise<void> {
  try {
    for await (const item of items) {
      if (cancelled()) return;
      if (!call.write(item)) await waitDrain(call, ctx.signal);
    }
    call.end();
  } catch (e) {
    if (cancelled()) return;
    const status = toGrpcError(e);
    logFailure(ctx, e, status);
    // grpc-js turns an 'error' event on a server stream into the trailing status and ends the call.
    call.emit('error', Object.assign(new Error(status.details), status));
  }
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
