import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notFound } from './errors.js';
import { handlers } from './grpc-handlers.js';
import { type BoundServer, createServer, listen } from './grpc-server.js';
import { nopLogger } from './log.js';

const raw = (b: Buffer): Buffer => b;
const method = (
  path: string,
  requestStream: boolean,
  responseStream: boolean,
): grpc.MethodDefinition<Buffer, Buffer> => ({
  path,
  requestStream,
  responseStream,
  requestSerialize: raw,
  requestDeserialize: raw,
  responseSerialize: raw,
  responseDeserialize: raw,
});
const definition = {
  echo: method('/test.T/Echo', true, true),
  count: method('/test.T/Count', false, true),
  blocks: method('/test.T/Blocks', false, true),
  get: method('/test.T/Get', false, false),
  watch: method('/test.T/Watch', false, false),
  late: method('/test.T/Late', false, false),
};

/** What the cancellation handlers saw, by request. */
const seen = new Map<string, string>();

describe('gRPC handler adapters', () => {
  let bound: BoundServer;
  let socketDir: string;
  let client: grpc.Client;

  beforeAll(async () => {
    const h = handlers(nopLogger);
    const server = createServer();
    server.addService(definition, {
      echo: h.bidi(async function* (requests: AsyncIterable<Buffer>) {
        for await (const r of requests) yield Buffer.from(`echo ${r.toString()}`);
      }),
      count: h.serverStream(async function* (req: Buffer) {
        const n = Number(req.toString());
        for (let i = 0; i < n; i++) yield Buffer.from(String(i));
        throw notFound('item 99');
      }),
      // Resolves a plain array: written without awaiting each item, yet with backpressure (64 KiB each).
      blocks: h.serverStream(async (req: Buffer) => {
        const n = Number(req.toString());
        if (n < 0) throw notFound('blocks');
        return Array.from({ length: n }, (_, i) => Buffer.alloc(64 * 1024, i % 256));
      }),
      get: h.unary(async (req: Buffer, ctx) => Buffer.from(`${ctx.namespace ?? '-'}:${req.toString()}`)),
      // Looks at the signal at once and waits for the abort.
      watch: h.unary(async (req: Buffer, ctx) => {
        const signal = ctx.signal;
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        seen.set(req.toString(), `aborted: ${(signal.reason as Error).name}`);
        return Buffer.from('');
      }),
      // First looks at the signal after the client is gone.
      late: h.unary(async (req: Buffer, ctx) => {
        await new Promise((resolve) => setTimeout(resolve, 200));
        seen.set(req.toString(), `aborted: ${ctx.signal.aborted}`);
        return Buffer.from('');
      }),
    });
    socketDir = mkdtempSync(join(tmpdir(), 'berth-h-'));
    bound = await listen(server, join(socketDir, 's.sock'));
    client = new (grpc.makeGenericClientConstructor(definition, 'T'))(bound.address, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client.close();
    await bound.close();
    rmSync(socketDir, { recursive: true, force: true });
  });

  it('bidi: a client that half-closes gets every answer and an OK status', async () => {
    const call = client.makeBidiStreamRequest('/test.T/Echo', raw, raw);
    const got: string[] = [];
    call.on('data', (d: Buffer) => got.push(d.toString()));
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.write(Buffer.from('a'));
    call.write(Buffer.from('b'));
    call.end();
    const s = await Promise.race([
      status,
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no status')), 3000)),
    ]);
    expect(s.code).toBe(grpc.status.OK);
    expect(got).toEqual(['echo a', 'echo b']);
  });

  it('server stream: items, then the error mapped to its gRPC code', async () => {
    const call = client.makeServerStreamRequest('/test.T/Count', raw, raw, Buffer.from('3'));
    const got: string[] = [];
    call.on('data', (d: Buffer) => got.push(d.toString()));
    const err = await new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
    expect(got).toEqual(['0', '1', '2']);
    expect([err.code, err.details]).toEqual([grpc.status.NOT_FOUND, 'item 99: not found']);
  });

  it('server stream from a plain array: every item in order past the flow-control window, or the error', async () => {
    const read = (n: number) => {
      const call = client.makeServerStreamRequest('/test.T/Blocks', raw, raw, Buffer.from(String(n)));
      const got: number[] = [];
      call.on('error', () => undefined); // the status below carries it
      call.on('data', (d: Buffer) => {
        if (d.length !== 64 * 1024 || d.some((b) => b !== d[0])) throw new Error('mangled block');
        got.push(d[0] ?? -1);
      });
      return new Promise<{ got: number[]; status: grpc.StatusObject }>((resolve) =>
        call.on('status', (status) => resolve({ got, status })),
      );
    };
    // 200 blocks of 64 KiB: far beyond HTTP/2's window, so writes wait for the client to drain.
    const { got, status } = await read(200);
    expect(status.code).toBe(grpc.status.OK);
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => i % 256));
    const failed = await read(-1);
    expect([failed.got, failed.status.code, failed.status.details]).toEqual([
      [],
      grpc.status.NOT_FOUND,
      'blocks: not found',
    ]);
  });

  it('unary: the namespace header reaches the handler context', async () => {
    const md = new grpc.Metadata();
    md.set('containerd-namespace', 'ns1');
    const res = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest('/test.T/Get', raw, raw, Buffer.from('x'), md, (e, r) =>
        e || !r ? reject(e) : resolve(r),
      ),
    );
    expect(res.toString()).toBe('ns1:x');
  });

  it('a cancelled call aborts its signal, whether the handler looked at it before or after', async () => {
    for (const path of ['/test.T/Watch', '/test.T/Late']) {
      const call = client.makeUnaryRequest(path, raw, raw, Buffer.from(path), () => undefined);
      await new Promise((resolve) => setTimeout(resolve, 50));
      call.cancel();
    }
    const deadline = Date.now() + 3000;
    while (seen.size < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(Object.fromEntries(seen)).toEqual({
      '/test.T/Watch': 'aborted: AbortError',
      '/test.T/Late': 'aborted: true',
    });
  });
});
