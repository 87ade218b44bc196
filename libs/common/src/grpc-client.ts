import * as grpc from '@grpc/grpc-js';
import { type CallContext, LeaseHeader, NamespaceHeader, type RequestContext } from './context.js';
import { fromGrpcError } from './grpc-status.js';
import { channelCredentialsFor } from './tls/credentials.js';

/** ctr sends messages of up to 16 MiB (Content.Write chunks, large container specs); accept a little more. */
export const maxMessageBytes = 32 * 1024 * 1024;

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
  ctx: CallContext,
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

/**
 * The grpc-js target for a configured address: one `unix:///…` socket or `host:port`; a comma-separated list
 * of IP `host:port` replicas (`127.0.0.2:7001,127.0.0.3:7001`, dialed as `ipv4:`/`ipv6:`); or a resolver
 * target such as `dns:///content.berth:7001`, whose every address is a replica.
 */
export function clientTarget(address: string): string {
  const trimmed = address.trim();
  if (/^(dns|ipv4|ipv6|unix|unix-abstract):/.test(trimmed)) return trimmed;
  if (trimmed.startsWith('/')) return `unix://${trimmed}`;
  const entries = trimmed
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (entries.length <= 1) return entries[0] ?? trimmed;
  if (entries.every((e) => /^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(e))) return `ipv4:${entries.join(',')}`;
  if (entries.every((e) => /^\[[0-9A-Fa-f:.]+\]:\d+$/.test(e))) return `ipv6:${entries.join(',')}`;
  throw new Error(
    `address list ${JSON.stringify(address)}: replicas must all be IPv4 or all [IPv6] host:port; ` +
      'for host names use one dns:///name:port target that resolves to every replica',
  );
}

/** Reads that change nothing: safe to send again to another replica when the first one became Unavailable. */
const idempotentMethods: Record<string, readonly string[]> = {
  'containerd.services.content.v1.Content': ['Info', 'List', 'Read', 'Status', 'ListStatuses'],
  'containerd.services.images.v1.Images': ['Get', 'List'],
  'containerd.services.containers.v1.Containers': ['Get', 'List', 'ListStream'],
  'containerd.services.namespaces.v1.Namespaces': ['Get', 'List'],
  'containerd.services.leases.v1.Leases': ['List', 'ListResources'],
  'containerd.services.introspection.v1.Introspection': ['Plugins', 'Server'],
};

/**
 * Client-side load balancing over every address a target resolves to (`round_robin`: each call goes to the
 * next ready replica; a replica whose connection drops leaves the rotation until it reconnects), and one
 * more attempt elsewhere for reads that met an Unavailable replica. Writes are not retried by the channel: a
 * replica killed mid-call may have applied one; a write that never left this process is retried by grpc-js
 * itself (transparent retry).
 */
export const balancedServiceConfig = JSON.stringify({
  loadBalancingConfig: [{ round_robin: {} }],
  methodConfig: [
    {
      name: Object.entries(idempotentMethods).flatMap(([service, methods]) =>
        methods.map((method) => ({ service, method })),
      ),
      retryPolicy: {
        maxAttempts: 3,
        initialBackoff: '0.05s',
        maxBackoff: '0.5s',
        backoffMultiplier: 2,
        retryableStatusCodes: ['UNAVAILABLE'],
      },
    },
  ],
});

/**
 * HTTP/2 receive windows (`grpc-node.flow_control_window`: a stream's initial window and the connection's). Node's
 * default (64 KiB) makes a peer sending a 1 MiB message (ctr's Content.Write chunks, a Content.Read chunk) stop
 * 16 times for a WINDOW_UPDATE, each one waiting for this event loop; Go's gRPC grows its windows to 16 MiB for
 * the same reason (BDP estimation). A server's are smaller (serverWindowBytes in grpc-server.ts).
 */
export const clientWindowBytes = 16 * 1024 * 1024;

export const channelOptions: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': maxMessageBytes,
  'grpc.max_send_message_length': maxMessageBytes,
  // The stream and connection receive window of the channel's connections.
  'grpc-node.flow_control_window': clientWindowBytes,
  // Clients only (servers ignore it): round_robin over replicas, see balancedServiceConfig.
  'grpc.service_config': balancedServiceConfig,
  // Clients only: a peer that restarts (a node, a replica) is dialled again within 2 s, not after grpc-js's
  // default backoff of up to 120 s, during which every call to it fails at once with UNAVAILABLE.
  'grpc.initial_reconnect_backoff_ms': 250,
  'grpc.max_reconnect_backoff_ms': 2_000,
};

/** Normalizes an address for grpc-js clients (`/path.sock` → `unix:///path.sock`; replica lists, see clientTarget). */
export function dialTarget(address: string): string {
  return clientTarget(address);
}

/** A grpc-js client class: the ones ts-proto generates, or `grpc.Client` itself. */
export type GrpcClientClass<C> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: Partial<grpc.ClientOptions>,
) => C;

/**
 * A `Client` of `address` (see dialTarget) with Berth's channel options (or `options`), over mTLS on TCP when
 * the process has cluster TLS. The channel connects on first use.
 */
export function dial<C>(
  Client: GrpcClientClass<C>,
  address: string,
  options: Partial<grpc.ClientOptions> = channelOptions,
): C {
  return new Client(dialTarget(address), channelCredentialsFor(address), options);
}

/**
 * A server stream's messages, in order, as they arrive. Aborting `signal` cancels the call; its failure is
 * a ServiceError (`fromGrpcError`); leaving the loop early cancels it too.
 */
export function streamOf<T>(call: grpc.ClientReadableStream<T>, signal: AbortSignal): AsyncIterable<T> {
  // Listened to at once: a call that fails before the loop starts must not throw an unhandled 'error' event
  // (the loop still sees the failure).
  call.on('error', () => undefined);
  return (async function* () {
    const cancel = (): void => call.cancel();
    signal.addEventListener('abort', cancel, { once: true });
    try {
      for await (const msg of call as AsyncIterable<T>) yield msg;
    } catch (e) {
      throw fromGrpcError(e);
    } finally {
      signal.removeEventListener('abort', cancel);
      call.cancel();
    }
  })();
}

/** Collects a server stream into an array, mapping its failure to a ServiceError; aborting `signal` cancels it. */
export function collect<T>(stream: grpc.ClientReadableStream<T>, signal: AbortSignal): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const items: T[] = [];
    const cancel = (): void => stream.cancel();
    signal.addEventListener('abort', cancel, { once: true });
    stream.on('data', (item: T) => items.push(item));
    stream.on('error', (e: unknown) => {
      signal.removeEventListener('abort', cancel);
      reject(fromGrpcError(e));
    });
    stream.on('end', () => {
      signal.removeEventListener('abort', cancel);
      resolve(items);
    });
  });
}
