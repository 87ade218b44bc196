import * as grpc from '@grpc/grpc-js';
import { LeaseHeader, NamespaceHeader, type RequestContext } from './context.js';
import { fromGrpcError } from './grpc-status.js';

/** Metadata that carries the request's namespace and lease to the next hop, as containerd's context does. */
export function outgoingMetadata(ctx: Pick<RequestContext, 'namespace' | 'lease'>): grpc.Metadata {
  const md = new grpc.Metadata();
  if (ctx.namespace) md.set(NamespaceHeader, ctx.namespace);
  if (ctx.lease) md.set(LeaseHeader, ctx.lease);
  return md;
}

/**
 * Runs one unary call of a ts-proto grpc-js client and maps its failure to a ServiceError.
 * Usage: `await invoke<Res>((md, opts, cb) => client.get(req, md, opts, cb), ctx)`.
 */
export function invoke<Res>(
  start: (
    md: grpc.Metadata,
    opts: Partial<grpc.CallOptions>,
    cb: (err: grpc.ServiceError | null, res?: Res) => void,
  ) => grpc.ClientUnaryCall,
  ctx: Pick<RequestContext, 'namespace' | 'lease' | 'signal'>,
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const call = start(outgoingMetadata(ctx), {}, (err, res) => {
      ctx.signal.removeEventListener('abort', cancel);
      if (err) reject(fromGrpcError(err));
      else if (res === undefined) reject(fromGrpcError(new Error('empty response')));
      else resolve(res);
    });
    const cancel = (): void => call.cancel();
    ctx.signal.addEventListener('abort', cancel, { once: true });
  });
}
