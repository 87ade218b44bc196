import { chmod, lstat, unlink } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { hasErrno } from './errors.js';
import { channelOptions } from './grpc-client.js';
import { type ClusterTls, logRefusedConnections, serverTlsFor } from './tls/credentials.js';

/**
 * A server's HTTP/2 receive windows (see clientWindowBytes in grpc-client.ts). grpc-js reads the option only on
 * clients; our patch of it (patches/@grpc__grpc-js@1.14.7.patch) applies it on servers too. A server's is
 * smaller: what a peer may have in flight per stream is memory this process holds, times the streams a
 * connection may open.
 */
export const serverWindowBytes = 4 * 1024 * 1024;

/** A gRPC listen address: `unix:///abs/path.sock` (or a bare absolute path) or `host:port`. */
export interface ListenAddress {
  readonly grpc: string;
  readonly socketPath: string | undefined;
}

export function parseListenAddress(address: string): ListenAddress {
  if (address.startsWith('unix://')) return { grpc: address, socketPath: address.slice('unix://'.length) };
  if (address.startsWith('/')) return { grpc: `unix://${address}`, socketPath: address };
  return { grpc: address, socketPath: undefined };
}

export interface BoundServer {
  readonly server: grpc.Server;
  /** The address clients dial: `unix:///path` or `127.0.0.1:<bound port>`. */
  readonly address: string;
  /** Graceful stop: refuses new calls, waits for running ones up to `graceMs`, then cancels them; removes the socket. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Streams one client connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): a client over the
 * limit waits for a stream to end, and one that ignores the setting has its extra streams refused. ctr opens a
 * handful; a whole node's gateway forwarding to a cluster service stays well under it.
 */
export const maxConcurrentStreams = 1024;

/** Server options: the message limits (larger messages end the call with RESOURCE_EXHAUSTED) and the stream cap. */
export const serverOptions: grpc.ServerOptions = {
  ...channelOptions,
  'grpc-node.flow_control_window': serverWindowBytes,
  'grpc.max_concurrent_streams': maxConcurrentStreams,
};

/** Creates a server with Berth's message and stream limits; register services on it, then call `listen`. */
export function createServer(): grpc.Server {
  return new grpc.Server(serverOptions);
}

/**
 * Binds `server` to `address`. A unix socket gets mode 0660 (root and its group only); a stale socket file
 * left by a crashed process is replaced, but a socket another live server answers on is refused. A TCP address
 * uses `tls` (default: the process's cluster TLS, if set) and logs the connections it refuses.
 */
export async function listen(
  server: grpc.Server,
  address: string,
  tls: ClusterTls | undefined = serverTlsFor(address),
): Promise<BoundServer> {
  const addr = parseListenAddress(address);
  if (addr.socketPath) await removeStaleSocket(addr.socketPath);
  const creds = tls && !addr.socketPath ? tls.server : grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(addr.grpc, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  if (addr.socketPath) await chmod(addr.socketPath, 0o660);
  if (tls && !addr.socketPath) logRefusedConnections(server, tls.log);
  const dial = addr.socketPath ? addr.grpc : `${addr.grpc.replace(/:\d+$/, '')}:${port}`;
  let closed: Promise<void> | undefined;
  return {
    server,
    address: dial,
    close: (graceMs = 5_000) => (closed ??= shutdown(server, graceMs, addr.socketPath)),
  };
}

async function shutdown(server: grpc.Server, graceMs: number, socketPath: string | undefined): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  if (socketPath)
    await unlink(socketPath).catch((e: unknown) => (hasErrno(e, 'ENOENT') ? undefined : Promise.reject(e)));
}

async function removeStaleSocket(path: string): Promise<void> {
  try {
    const st = await lstat(path);
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  } catch (e) {
    if (hasErrno(e, 'ENOENT')) return;
    throw e;
  }
  if (await socketAnswers(path)) throw new Error(`${path} is in use by another server`);
  await unlink(path);
}

async function socketAnswers(path: string): Promise<boolean> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
