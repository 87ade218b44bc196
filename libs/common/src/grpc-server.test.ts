import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BoundServer, createServer, listen, serverWindowBytes } from './grpc-server.js';

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
