import { type RequestContext, viewOf } from './context.js';
import { ServiceError } from './errors.js';
import { fromGrpcError, toGrpcError } from './grpc-status.js';

/**
 * Calls another service's domain layer in this process as a gRPC client call would reach it, so a peer can
 * skip the socket without changing what its caller sees. The callee gets the context a server builds from the
 * headers (namespace and lease as sent, an empty one absent; the caller's signal and logger), and a failure
 * comes back as the client would get it: the same errdefs code and message, a foreign error included
 * (unknown, or canceled for an abort), with the original as its cause.
 */
export async function localCall<T>(ctx: RequestContext, fn: (ctx: RequestContext) => Promise<T>): Promise<T> {
  try {
    // The caller's lazily made signal and logger stay unmade unless the callee uses them.
    return await fn(viewOf(ctx, ctx.namespace || undefined, ctx.lease || undefined));
  } catch (e) {
    if (e instanceof ServiceError) throw e;
    const received = fromGrpcError(toGrpcError(e));
    throw new ServiceError(received.code, received.message, { cause: e });
  }
}
