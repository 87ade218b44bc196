/**
 * A real NATS protocol probe: connect, read the server's INFO line, parse it.
 */
import { connect } from 'node:net';

/** The fields of a NATS INFO message the kit looks at. */
export interface NatsInfo {
  readonly server_id: string;
  readonly server_name?: string;
  readonly version: string;
  readonly jetstream?: boolean;
  readonly [field: string]: unknown;
}

/** Connects to `host:port`, reads `INFO {...}\r\n`, and closes. Rejects on timeout or non-NATS peers. */
export function natsInfo(host: string, port: number, timeoutMs = 1000): Promise<NatsInfo> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    let buf = '';
    const done = (err: Error | undefined, info?: NatsInfo): void => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else if (info) resolve(info);
    };
    const timer = setTimeout(
      () => done(new Error(`no NATS INFO from ${host}:${port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    sock.setEncoding('utf8');
    sock.on('error', (err) => done(err));
    sock.on('close', () => done(new Error(`${host}:${port} closed the connection before sending INFO`)));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const eol = buf.indexOf('\r\n');
      if (eol < 0) {
        if (buf.length > 64 * 1024) done(new Error(`${host}:${port}: no INFO line in the first 64 KiB`));
        return;
      }
      const line = buf.slice(0, eol);
      if (!line.startsWith('INFO ')) {
        done(new Error(`${host}:${port} is not a NATS server (first line: ${JSON.stringify(line.slice(0, 80))})`));
        return;
      }
      try {
        done(undefined, JSON.parse(line.slice(5)) as NatsInfo);
      } catch (err) {
        done(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

/** Host and port of a `nats://host:port` URL (default port 4222). */
export function natsHostPort(url: string): { host: string; port: number } {
  const u = new URL(url.includes('://') ? url : `nats://${url}`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port: u.port ? Number(u.port) : 4222 };
}
