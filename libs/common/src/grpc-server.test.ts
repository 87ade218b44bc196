import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:http2';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BoundServer,
  createServer,
  keepaliveTimeMs,
  keepaliveTimeoutMs,
  listen,
  serverOptions,
  serverWindowBytes,
} from './grpc-server.js';

describe('a listening server', () => {
  let dir: string;
  let bound: BoundServer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'grpc-server-'));
    bound = await listen(createServer(), join(dir, 's.sock'));
  });
  afterAll(async () => {
    await bound.close(0);
    await rm(dir, { recursive: true, force: true });
  });

  it('grants its peers wide receive windows (a 1 MiB message flows without waiting for window updates)', async () => {
    const session = connect('http://localhost', { path: join(dir, 's.sock') } as never);
    try {
      await new Promise<void>((resolve, reject) => {
        session.once('remoteSettings', () => resolve());
        session.once('error', reject);
      });
      expect(session.remoteSettings.initialWindowSize).toBe(serverWindowBytes);
      // The connection window arrives as a WINDOW_UPDATE right after the SETTINGS.
      for (let i = 0; i < 100 && (session.state.remoteWindowSize ?? 0) < serverWindowBytes; i++)
        await new Promise((r) => setTimeout(r, 10));
      expect(session.state.remoteWindowSize).toBe(serverWindowBytes);
    } finally {
      session.destroy();
    }
  });
});

describe('keepalive', () => {
  it('is on for every server, at 30 s with a 10 s answer timeout', () => {
    expect(serverOptions['grpc.keepalive_time_ms']).toBe(keepaliveTimeMs);
    expect(serverOptions['grpc.keepalive_timeout_ms']).toBe(keepaliveTimeoutMs);
    expect([keepaliveTimeMs, keepaliveTimeoutMs]).toEqual([30_000, 10_000]);
  });

  /** The same server with the keepalive shortened: a TCP peer that answers no ping is dropped, one that does stays. */
  describe('on a TCP listener (shortened)', () => {
    let bound: BoundServer;
    let port: number;

    beforeAll(async () => {
      bound = await listen(
        createServer({ 'grpc.keepalive_time_ms': 150, 'grpc.keepalive_timeout_ms': 150 }),
        '127.0.0.1:0',
        undefined,
      );
      port = Number(bound.address.split(':').pop());
    });
    afterAll(async () => {
      await bound.close(0);
    });

    it('drops a connection whose peer stopped answering', async () => {
      const socket = connectTcp(port, '127.0.0.1');
      const started = Date.now();
      const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - started)));
      socket.on('error', () => undefined);
      // Reads (and drops) what the server sends, so it sees the server close the connection.
      socket.resume();
      // An HTTP/2 client preface and empty SETTINGS, then silence: no SETTINGS ack, no PING ack, as from a peer that went away.
      socket.write(
        Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]),
      );
      const after = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 5_000))]);
      socket.destroy();
      expect(after).toBeGreaterThan(0);
      expect(after).toBeLessThan(2_000);
    });

    it('keeps a connection whose peer answers its pings', async () => {
      const session = connect(`http://127.0.0.1:${port}`);
      let pings = 0;
      session.on('ping', () => pings++);
      session.on('error', () => undefined);
      try {
        await new Promise((r) => setTimeout(r, 1_000));
        expect(pings).toBeGreaterThanOrEqual(2);
        expect(session.closed || session.destroyed).toBe(false);
      } finally {
        session.destroy();
      }
    });
  });
});
