import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Db, openDb } from '@berth/common/db';
import { createInProcessBus, type EventBus } from '@berth/common/event-bus';
import { channelOptions } from '@berth/common/grpc-client';
import { type BoundServer, createServer, listen } from '@berth/common/grpc-server';
import { nopLogger } from '@berth/common/log';
import {
  ContentClient,
  WriteAction,
  type WriteContentRequest,
  type WriteContentResponse,
} from '@berth/proto/containerd/services/content/v1/content';
import * as grpc from '@grpc/grpc-js';
import { type BlobBackendConfig, type ContentModule, createContentModule } from '../src/index.js';

export interface Harness {
  readonly client: ContentClient;
  readonly module: ContentModule;
  readonly db: Db;
  readonly bus: EventBus;
  /** Stops the server and module but keeps the database and bytes: `restart` builds a new process view. */
  restart(): Promise<Harness>;
  close(): Promise<void>;
}

/** Starts the content module on a unix socket with an embedded database, on `backend`. */
export async function startHarness(
  backend: BlobBackendConfig,
  shared?: { db: Db; bus: EventBus; dir: string },
  metadataAddress?: string,
  opts: { stallMs?: number; maxOpenIngests?: number } = {},
): Promise<Harness> {
  const dir = shared?.dir ?? mkdtempSync(join(tmpdir(), 'berth-content-h-'));
  const db = shared?.db ?? (await openDb('pglite://memory'));
  const bus = shared?.bus ?? createInProcessBus();
  const module = await createContentModule({
    db,
    bus,
    log: nopLogger,
    backend,
    ...(metadataAddress ? { metadataAddress } : {}),
    ...(opts.stallMs ? { stallMs: opts.stallMs } : {}),
    ...(opts.maxOpenIngests !== undefined ? { maxOpenIngests: opts.maxOpenIngests } : {}),
  });
  const server = createServer();
  for (const r of module.grpc) server.addService(r.definition, r.implementation);
  const bound: BoundServer = await listen(server, join(dir, `c-${Math.random().toString(36).slice(2)}.sock`));
  const client = new ContentClient(bound.address, grpc.credentials.createInsecure(), channelOptions);
  const stop = async (): Promise<void> => {
    client.close();
    await bound.close(100);
    await module.close();
  };
  return {
    client,
    module,
    db,
    bus,
    async restart() {
      await stop();
      return startHarness(backend, { db, bus, dir }, metadataAddress, opts);
    },
    async close() {
      await stop();
      await db.close();
      await bus.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function md(namespace?: string, lease?: string): grpc.Metadata {
  const m = new grpc.Metadata();
  if (namespace) m.set('containerd-namespace', namespace);
  if (lease) m.set('containerd-lease', lease);
  return m;
}

export const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** One Write stream driven request by request, as containerd's remoteWriter does. */
export class WriteStream {
  private readonly call: grpc.ClientDuplexStream<WriteContentRequest, WriteContentResponse>;
  private readonly queue: WriteContentResponse[] = [];
  private waiting: { resolve: (r: WriteContentResponse) => void; reject: (e: unknown) => void } | undefined;
  private failure: grpc.ServiceError | undefined;
  private ended = false;

  constructor(client: ContentClient, namespace: string, lease?: string) {
    this.call = client.write(md(namespace, lease));
    this.call.on('data', (r: WriteContentResponse) => {
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w.resolve(r);
      } else this.queue.push(r);
    });
    this.call.on('error', (e: grpc.ServiceError) => {
      this.failure = e;
      this.waiting?.reject(e);
      this.waiting = undefined;
    });
    this.call.on('end', () => {
      this.ended = true;
      this.waiting?.reject(new Error('stream ended without a response'));
      this.waiting = undefined;
    });
  }

  send(req: Partial<WriteContentRequest>): Promise<WriteContentResponse> {
    this.call.write({
      action: WriteAction.STAT,
      ref: '',
      total: 0,
      expected: '',
      offset: 0,
      data: Buffer.alloc(0),
      labels: {},
      ...req,
    });
    return this.next();
  }

  next(): Promise<WriteContentResponse> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.reject(new Error('stream ended'));
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** Half-closes, as the client does after COMMIT or when it gives up. */
  end(): void {
    this.call.end();
  }

  cancel(): void {
    this.call.cancel();
  }
}

/** Writes `data` in `chunk`-sized WRITE messages then COMMITs, like ctr content ingest. Resolves the last response. */
export async function writeBlob(
  client: ContentClient,
  namespace: string,
  ref: string,
  data: Buffer,
  opts: { expected?: string; total?: number; labels?: Record<string, string>; chunk?: number; lease?: string } = {},
): Promise<WriteContentResponse> {
  const s = new WriteStream(client, namespace, opts.lease);
  try {
    const st = await s.send({
      action: WriteAction.STAT,
      ref,
      total: opts.total ?? data.length,
      expected: opts.expected ?? '',
    });
    let offset = st.offset;
    const chunk = opts.chunk ?? 1 << 20;
    while (offset < data.length) {
      const piece = data.subarray(offset, Math.min(data.length, offset + chunk));
      const r = await s.send({ action: WriteAction.WRITE, offset, data: piece });
      offset = r.offset;
    }
    return await s.send({
      action: WriteAction.COMMIT,
      offset,
      total: opts.total ?? data.length,
      expected: opts.expected ?? '',
      labels: opts.labels ?? {},
    });
  } finally {
    s.end();
  }
}

type Unary<Req, Res> = (req: Req, meta: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: Res) => void) => unknown;

/** A unary call as a promise that rejects with the grpc ServiceError. */
export function call<Req, Res>(
  fn: Unary<Req, Res>,
  client: ContentClient,
  req: Req,
  meta: grpc.Metadata,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn.call(client, req, meta, (e, r) =>
      e ? reject(e) : r === undefined ? reject(new Error('no response')) : resolve(r),
    );
  });
}

/** Collects a server stream; rejects with the grpc ServiceError. */
export function collect<T>(stream: grpc.ClientReadableStream<T>): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const out: T[] = [];
    stream.on('data', (d: T) => out.push(d));
    stream.on('error', reject);
    stream.on('end', () => resolve(out));
  });
}

export async function readAll(
  client: ContentClient,
  namespace: string,
  digest: string,
  offset = 0,
  size = 0,
): Promise<Buffer> {
  const parts = await collect(client.read({ digest, offset, size }, md(namespace)));
  return Buffer.concat(parts.map((p) => p.data));
}

/** Rejects unless `p` fails with gRPC status `code`; resolves the error for message checks. */
export async function failsWith(p: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    const err = e as grpc.ServiceError;
    if (err.code !== code) throw new Error(`expected code ${code}, got ${err.code}: ${err.details ?? String(e)}`);
    return err;
  }
  throw new Error(`expected code ${code}, but the call succeeded`);
}
