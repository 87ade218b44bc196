import { readFileSync } from 'node:fs';
import type { Http2SecureServer } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log.js';

/**
 * Mutual TLS between Berth services. Every process holds the cluster CA and its own certificate; a server
 * demands a client certificate signed by that CA, and a client checks the server's the same way. The files are
 * re-read every `refreshMs`, so a rotated certificate (or CA) takes effect without a restart. Unix sockets stay
 * plaintext: their file mode (0660) is their access control.
 */

/** PEM files: the cluster CA certificate, this process's certificate and its private key. */
export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface ClusterTls {
  readonly server: grpc.ServerCredentials;
  readonly channel: grpc.ChannelCredentials;
  /** Where refused (failed handshake) connections are reported. */
  readonly log: Logger;
}

/** Throws when a file cannot be read now: a typo would otherwise refuse every connection, silently. */
export function clusterTls(files: TlsFiles, opts: { log: Logger; refreshMs?: number }): ClusterTls {
  for (const key of ['ca', 'cert', 'key'] as const) {
    const file = files[key];
    try {
      readFileSync(file);
    } catch (e) {
      throw new Error(`tls.${key}: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const provider = new grpc.experimental.FileWatcherCertificateProvider({
    caCertificateFile: files.ca,
    certificateFile: files.cert,
    privateKeyFile: files.key,
    refreshIntervalMs: opts.refreshMs ?? 60_000,
  });
  return {
    server: grpc.experimental.createCertificateProviderServerCredentials(provider, provider, true),
    channel: grpc.experimental.createCertificateProviderChannelCredentials(provider, provider),
    log: opts.log,
  };
}

/**
 * The process's cluster TLS, set once at startup by the daemon (like its OpenTelemetry provider): every gRPC
 * client and listener that crosses TCP picks it up, so no service needs its own TLS wiring.
 */
let processTls: ClusterTls | undefined;

export function useClusterTls(tls: ClusterTls | undefined): void {
  processTls = tls;
}

const isUnix = (address: string): boolean => address.startsWith('unix:') || address.startsWith('/');

/** Credentials to dial `address`: TLS with the cluster identity over TCP when configured, else plaintext. */
export function channelCredentialsFor(address: string): grpc.ChannelCredentials {
  return !isUnix(address) && processTls ? processTls.channel : grpc.credentials.createInsecure();
}

/** The TLS a listener on `address` uses, if any (never for a unix socket). */
export function serverTlsFor(address: string): ClusterTls | undefined {
  return isUnix(address) ? undefined : processTls;
}

/**
 * Logs connections whose TLS handshake failed (no client certificate, one from another CA, plaintext). grpc-js
 * does not surface these, so this reaches for its listeners; if that field ever goes away, it says so once.
 */
const watched = new WeakSet<object>();

export function logRefusedConnections(server: grpc.Server, log: Logger): void {
  const listeners = (server as unknown as { http2Servers?: Map<unknown, unknown> }).http2Servers;
  if (!(listeners instanceof Map)) {
    log.warn('cannot log refused TLS connections with this grpc-js version');
    return;
  }
  for (const l of listeners.keys()) {
    const secure = l as Http2SecureServer;
    if (typeof secure.on !== 'function' || watched.has(secure)) continue;
    watched.add(secure);
    secure.on('tlsClientError', (err, socket) => {
      log.warn('refused connection: TLS handshake failed', {
        remote: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`,
        reason: err.message,
      });
    });
  }
}
