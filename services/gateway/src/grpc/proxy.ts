import { dial } from '@berth/common/grpc-client';
import type { GrpcRegistration } from '@berth/common/service';
import * as grpc from '@grpc/grpc-js';

const passThrough = (b: Buffer): Buffer => b;

/** Headers grpc-js manages itself; everything else (namespace, lease, trace context) travels on. */
const hopHeaders = new Set([
  'content-type',
  'user-agent',
  'grpc-accept-encoding',
  'grpc-encoding',
  'grpc-timeout',
  'te',
]);

function forwardMetadata(md: grpc.Metadata): grpc.Metadata {
  const out = new grpc.Metadata();
  for (const [k, v] of Object.entries(md.getMap())) {
    if (!hopHeaders.has(k) && !k.startsWith(':')) out.set(k, v);
  }
  return out;
}

function callOptions(call: { getDeadline(): grpc.Deadline }): grpc.CallOptions {
  const deadline = call.getDeadline();
  return deadline === Infinity ? {} : { deadline };
}

/** An upstream that cannot be reached answers Unavailable, as containerd's errdefs expect. */
function unreachable(err: grpc.ServiceError): grpc.StatusObject {
  return { code: err.code, details: err.details, metadata: err.metadata ?? new grpc.Metadata() };
}

/**
 * A registration that serves every method of `def` by forwarding each call's raw message bytes to
 * `upstream` and the answer back: no decode, no re-encode. Metadata, deadlines and cancellation are
 * propagated both ways.
 */
export function forwardedService(def: grpc.ServiceDefinition, upstream: grpc.Client): GrpcRegistration {
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(def)) {
    const path = method.path;
    definition[name] = {
      path,
      requestStream: method.requestStream,
      responseStream: method.responseStream,
      requestSerialize: passThrough,
      requestDeserialize: passThrough,
      responseSerialize: passThrough,
      responseDeserialize: passThrough,
    };
    implementation[name] = forwarder(path, method.requestStream, method.responseStream, upstream);
  }
  return { definition, implementation };
}

function forwarder(
  path: string,
  requestStream: boolean,
  responseStream: boolean,
  upstream: grpc.Client,
): grpc.UntypedHandleCall {
  if (!requestStream && !responseStream) {
    return (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const up = upstream.makeUnaryRequest(
        path,
        passThrough,
        passThrough,
        call.request,
        forwardMetadata(call.metadata),
        callOptions(call),
        (err, res) => (err ? callback(unreachable(err)) : callback(null, res)),
      );
      up.on('metadata', (md) => call.sendMetadata(md));
      call.on('cancelled', () => up.cancel());
    };
  }
  if (!requestStream) {
    return (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const up = upstream.makeServerStreamRequest(
        path,
        passThrough,
        passThrough,
        call.request,
        forwardMetadata(call.metadata),
        callOptions(call),
      );
      relayResponses(up, call);
      call.on('cancelled', () => up.cancel());
    };
  }
  if (!responseStream) {
    return (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const up = upstream.makeClientStreamRequest(
        path,
        passThrough,
        passThrough,
        forwardMetadata(call.metadata),
        callOptions(call),
        (err, res) => (err ? callback(unreachable(err)) : callback(null, res)),
      );
      forwardRequests(call, up);
      call.on('cancelled', () => up.cancel());
    };
  }
  return (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    const up = upstream.makeBidiStreamRequest(
      path,
      passThrough,
      passThrough,
      forwardMetadata(call.metadata),
      callOptions(call),
    );
    forwardRequests(call, up);
    relayResponses(up, call);
    call.on('cancelled', () => up.cancel());
  };
}

/** Copies client messages upstream with backpressure, and half-closes upstream when the client does. */
function forwardRequests(
  call: grpc.ServerReadableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>,
  up: grpc.ClientWritableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>,
): void {
  call.on('data', (chunk: Buffer) => {
    if (!up.write(chunk)) {
      call.pause();
      up.once('drain', () => call.resume());
    }
  });
  call.on('end', () => up.end());
}

/** Copies upstream responses to the client with backpressure, then the upstream's final status. */
function relayResponses(
  up: grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>,
  call: grpc.ServerWritableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>,
): void {
  up.on('metadata', (md) => call.sendMetadata(md));
  up.on('data', (chunk: Buffer) => {
    if (!call.write(chunk)) {
      up.pause();
      call.once('drain', () => up.resume());
    }
  });
  up.on('error', (err: grpc.ServiceError) => {
    call.emit('error', unreachable(err));
  });
  up.on('status', (status: grpc.StatusObject) => {
    if (status.code === grpc.status.OK) call.end(status.metadata);
  });
}

/** A client for raw forwarding to `address` (`unix:///…` or `host:port`). */
export function createUpstream(address: string): grpc.Client {
  return dial(grpc.Client, address);
}
