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

/**
 * Keepalive: the server pings each connection after this long without a ping and drops it when the answer takes
 * longer than `keepaliveTimeoutMs`. A TCP peer that vanished (a node powered off, a partition) sends no FIN: without
 * pings its connection, and every call on it with what that call holds (an open blob, a paused Read), lives until
 * the kernel gives up hours later. grpc-js takes these per server, not per listener; unix-socket peers (ctr) answer
 * pings just as cheaply. Clients need no option to allow them: only a server polices pings (grpc-go's
 * too_many_pings is about pings it receives, and grpc-js servers police none), and Berth's clients send none.
 */
export const keepaliveTimeMs = 30_000;
export const keepaliveTimeoutMs = 10_000;

/** Server options: the message limits (larger messages end the call with RESOURCE_EXHAUSTED), the stream cap, keepalive. */
export const serverOptions: grpc.ServerOptions = {
  ...channelOptions,
  'grpc-node.flow_control_window': serverWindowBytes,
  'grpc.max_concurrent_streams': maxConcurrentStreams,
  'grpc.keepalive_time_ms': keepaliveTimeMs,
  'grpc.keepalive_timeout_ms': keepaliveTimeoutMs,
};

/**
 * Creates a server with Berth's message and stream limits and keepalive; register services on it, then call
 * `listen`. `overrides` replace single options (tests shorten the keepalive).
 */
export function createServer(overrides: grpc.ServerOptions = {}): grpc.Server {
  return new grpc.Server({ ...serverOptions, ...overrides });
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
