import { mkdtempSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxMessageBytes } from './grpc-client.js';
import { type BoundServer, createServer, listen, maxConcurrentStreams } from './grpc-server.js';

const raw = (b: Buffer): Buffer => b;
const definition = {
  size: {
    path: '/test.Limits/Size',
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
} satisfies grpc.ServiceDefinition;

describe('server limits', () => {
  let dir: string;
  let bound: BoundServer;
  let client: grpc.Client;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-limits-'));
    const server = createServer();
    server.addService(definition, {
      size: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
        cb(null, Buffer.from(String(call.request.length))),
    });
    bound = await listen(server, join(dir, 's.sock'));
    // A client that would send anything: the server alone must enforce the limit.
    client = new grpc.Client(bound.address, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': -1,
    });
  });
  afterAll(async () => {
    client?.close();
    await bound?.close(100);
    rmSync(dir, { recursive: true, force: true });
  });

  const send = (n: number): Promise<string> =>
    new Promise((resolve, reject) =>
      client.makeUnaryRequest(definition.size.path, raw, raw, Buffer.alloc(n), (err, res) =>
        err ? reject(err) : resolve(res?.toString() ?? ''),
      ),
    );

  it('accepts a 16 MiB message (ctr Content.Write chunks) and refuses one over the cap with RESOURCE_EXHAUSTED', async () => {
    expect(await send(16 * 1024 * 1024)).toBe(String(16 * 1024 * 1024));
    const err = await send(maxMessageBytes + 1).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err?.details).toMatch(/larger than max/);
  });

  it('announces the concurrent stream cap to every connection', async () => {
    const session = http2.connect('http://localhost', {
      createConnection: () => connect(join(dir, 's.sock')),
    });
    try {
      const settings = await new Promise<http2.Settings>((resolve, reject) => {
        session.once('remoteSettings', resolve);
        session.once('error', reject);
      });
      expect(settings.maxConcurrentStreams).toBe(maxConcurrentStreams);
    } finally {
      session.close();
    }
  });
});
