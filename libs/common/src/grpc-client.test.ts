import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelOptions, clientTarget, dialTarget } from './grpc-client.js';
import { type BoundServer, createServer, listen } from './grpc-server.js';

const raw = (b: Buffer): Buffer => b;
const getPath = '/containerd.services.namespaces.v1.Namespaces/Get';
const createPath = '/containerd.services.namespaces.v1.Namespaces/Create';
const definition = {
  get: { path: getPath, requestStream: false, responseStream: false },
  create: { path: createPath, requestStream: false, responseStream: false },
};

/** A replica that answers with its own name. */
async function replica(name: string): Promise<BoundServer> {
  const server = createServer();
  const answer = (_call: unknown, cb: grpc.sendUnaryData<Buffer>): void => cb(null, Buffer.from(name));
  const def = Object.fromEntries(
    Object.entries(definition).map(([k, m]) => [
      k,
      { ...m, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw },
    ]),
  );
  server.addService(def, { get: answer, create: answer });
  return listen(server, '127.0.0.1:0');
}

function call(client: grpc.Client, path: string): Promise<string> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(path, raw, raw, Buffer.from(''), (err, res) =>
      err ? reject(err) : resolve((res as Buffer).toString()),
    ),
  );
}

describe('client targets', () => {
  it('turns lists of replicas into grpc-js targets and refuses what it cannot balance', () => {
    expect(clientTarget('/run/berth/metadata.sock')).toBe('unix:///run/berth/metadata.sock');
    expect(clientTarget('unix:///run/m.sock')).toBe('unix:///run/m.sock');
    expect(clientTarget('127.0.0.1:7001')).toBe('127.0.0.1:7001');
    expect(clientTarget('content:7001')).toBe('content:7001');
    expect(clientTarget('127.0.0.2:7001, 127.0.0.3:7001')).toBe('ipv4:127.0.0.2:7001,127.0.0.3:7001');
    expect(clientTarget('[::1]:7001,[::1]:7002')).toBe('ipv6:[::1]:7001,[::1]:7002');
    expect(clientTarget('dns:///content.berth:7001')).toBe('dns:///content.berth:7001');
    expect(() => clientTarget('content-1:7001,content-2:7001')).toThrow(/dns:\/\/\/name:port/);
    expect(dialTarget('127.0.0.2:1,127.0.0.3:2')).toBe('ipv4:127.0.0.2:1,127.0.0.3:2');
  });
});

describe('a client over two replicas', () => {
  let a: BoundServer;
  let b: BoundServer;
  let client: grpc.Client;

  beforeAll(async () => {
    a = await replica('a');
    b = await replica('b');
    client = new grpc.Client(
      dialTarget(`${a.address},${b.address}`),
      grpc.credentials.createInsecure(),
      channelOptions,
    );
  });
  afterAll(async () => {
    client.close();
    await Promise.all([a.close(0), b.close(0)]);
  });

  it('spreads calls over both (round_robin) and keeps answering when one goes away', async () => {
    // Both subchannels connect in the background; give the balancer a moment to see them ready.
    await call(client, getPath);
    await new Promise((r) => setTimeout(r, 200));
    const before = new Set<string>();
    for (let i = 0; i < 8; i++) before.add(await call(client, getPath));
    expect([...before].sort()).toEqual(['a', 'b']);

    a.server.forceShutdown();
    const after: string[] = [];
    for (let i = 0; i < 8; i++) after.push(await call(client, getPath), await call(client, createPath));
    expect(new Set(after)).toEqual(new Set(['b']));
  });
});

describe('a client on a dns:/// target', () => {
  it('reaches the replicas the name resolves to', async () => {
    const r = await replica('by-name');
    const port = r.address.split(':').at(-1);
    const client = new grpc.Client(
      dialTarget(`dns:///localhost:${port}`),
      grpc.credentials.createInsecure(),
      channelOptions,
    );
    try {
      for (let i = 0; i < 4; i++) expect(await call(client, getPath)).toBe('by-name');
    } finally {
      client.close();
      await r.close(0);
    }
  });
});
