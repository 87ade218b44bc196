import { nopLogger } from '@berth/common/log';
import type { ServiceModule } from '@berth/common/service';
import {
  ContentClient,
  ContentService,
  type ReadContentResponse,
  WriteAction,
  type WriteContentResponse,
} from '@berth/proto/containerd/services/content/v1/content';
import {
  IntrospectionClient,
  type PluginsResponse,
} from '@berth/proto/containerd/services/introspection/v1/introspection';
import {
  type GetNamespaceResponse,
  NamespacesClient,
  NamespacesService,
} from '@berth/proto/containerd/services/namespaces/v1/namespace';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGatewayModule } from '../src/index.js';

async function serve(registrations: ServiceModule['grpc']): Promise<{ server: grpc.Server; address: string }> {
  const server = new grpc.Server();
  for (const r of registrations) server.addService(r.definition, r.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return { server, address: `127.0.0.1:${port}` };
}

const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<never>): void =>
  cb({ code: grpc.status.UNIMPLEMENTED, details: 'not in this test' });

/** An upstream metadata and content: answers from what the call carried, so the test sees what was forwarded. */
function upstreamRegistrations(): ServiceModule['grpc'] {
  return [
    {
      definition: NamespacesService,
      implementation: {
        get(call: grpc.ServerUnaryCall<{ name: string }, GetNamespaceResponse>, cb: grpc.sendUnaryData<never>) {
          if (call.request.name === 'missing') {
            cb({ code: grpc.status.NOT_FOUND, details: 'namespace "missing": not found' });
            return;
          }
          const ns = String(call.metadata.get('containerd-namespace')[0] ?? '');
          cb(null, { namespace: { name: call.request.name, labels: { seen: ns } } } as never);
        },
        list: unimplemented,
        create: unimplemented,
        update: unimplemented,
        delete: unimplemented,
      },
    },
    {
      definition: ContentService,
      implementation: {
        info: unimplemented,
        update: unimplemented,
        list: (call: grpc.ServerWritableStream<unknown, unknown>) => call.end(),
        delete: unimplemented,
        read(call: grpc.ServerWritableStream<{ size: number }, unknown>) {
          for (let i = 0; i < 3; i++) call.write({ offset: i, data: Buffer.from(`chunk-${i}`) });
          call.end();
        },
        status: unimplemented,
        listStatuses: unimplemented,
        write(call: grpc.ServerDuplexStream<{ ref: string; data: Uint8Array }, unknown>) {
          let offset = 0;
          call.on('data', (req: { ref: string; data: Uint8Array }) => {
            offset += req.data.length;
            call.write({ action: WriteAction.WRITE, offset, total: 0, digest: '', startedAt: undefined });
          });
          call.on('end', () => call.end());
        },
        abort: unimplemented,
      },
    },
  ];
}

describe('gateway: routes each containerd service to the process that owns it', () => {
  let upstream: { server: grpc.Server; address: string };
  let gateway: { server: grpc.Server; address: string };
  let module: ServiceModule;
  const creds = grpc.credentials.createInsecure();

  beforeAll(async () => {
    upstream = await serve(upstreamRegistrations());
    module = createGatewayModule({
      log: nopLogger,
      build: { version: '1.7.0+berth', revision: 'test' },
      uuid: 'node-uuid',
      local: [],
      // Diff points at a port nothing listens on.
      upstreams: { metadata: upstream.address, content: upstream.address, diff: '127.0.0.1:1' },
      probeMs: 60_000,
    });
    gateway = await serve(module.grpc);
  });
  afterAll(async () => {
    await module.close();
    gateway.server.forceShutdown();
    upstream.server.forceShutdown();
  });

  it('forwards a unary call with its metadata, and the answer back', async () => {
    const client = new NamespacesClient(gateway.address, creds);
    const md = new grpc.Metadata();
    md.set('containerd-namespace', 'ns1');
    const res = await new Promise<GetNamespaceResponse>((resolve, reject) =>
      client.get({ name: 'default' }, md, (err, r) => (err ? reject(err) : resolve(r))),
    );
    expect(res.namespace).toMatchObject({ name: 'default', labels: { seen: 'ns1' } });
    client.close();
  });

  it("passes the upstream's error code and message through unchanged", async () => {
    const client = new NamespacesClient(gateway.address, creds);
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.get({ name: 'missing' }, (e) => resolve(e as grpc.ServiceError)),
    );
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toBe('namespace "missing": not found');
    client.close();
  });

  it('forwards server streams and bidirectional streams message by message', async () => {
    const client = new ContentClient(gateway.address, creds);
    const chunks: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = client.read({ digest: 'sha256:x', offset: 0, size: 0 });
      stream.on('data', (r: ReadContentResponse) => chunks.push(Buffer.from(r.data).toString()));
      stream.on('error', reject);
      stream.on('end', () => resolve());
    });
    expect(chunks).toEqual(['chunk-0', 'chunk-1', 'chunk-2']);

    const offsets: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const w = client.write();
      w.on('data', (r: WriteContentResponse) => offsets.push(r.offset));
      w.on('error', reject);
      w.on('end', () => resolve());
      for (const data of ['ab', 'cde']) {
        w.write({
          action: WriteAction.WRITE,
          ref: 'r',
          total: 0,
          expected: '',
          offset: 0,
          data: Buffer.from(data),
          labels: {},
        });
      }
      w.end();
    });
    expect(offsets).toEqual([2, 5]);
    client.close();
  });

  it('answers unavailable for a service whose process cannot be reached', async () => {
    const { DiffClient } = await import('@berth/proto/containerd/services/diff/v1/diff');
    const client = new DiffClient(gateway.address, creds);
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.diff({ left: [], right: [], mediaType: '', ref: '', labels: {} } as never, (e) =>
        resolve(e as grpc.ServiceError),
      ),
    );
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    client.close();
  });

  it('lists its own plugins, and an unreachable upstream as errored plugins', async () => {
    const client = new IntrospectionClient(gateway.address, creds);
    const res = await new Promise<PluginsResponse>((resolve, reject) =>
      client.plugins({ filters: [] }, (err, r) => (err ? reject(err) : resolve(r))),
    );
    const ids = res.plugins.map((p) => `${p.type}.${p.id}`);
    expect(ids).toEqual(
      expect.arrayContaining([
        'io.containerd.grpc.v1.version',
        'io.containerd.grpc.v1.introspection',
        'io.containerd.grpc.v1.healthcheck',
        'io.berth.gateway.v1.diff',
      ]),
    );
    const diff = res.plugins.find((p) => p.type === 'io.containerd.grpc.v1' && p.id === 'diff');
    expect(diff?.initErr?.code).toBe(grpc.status.UNAVAILABLE);
    expect(diff?.initErr?.message).toContain('diff unreachable at 127.0.0.1:1');
    client.close();
  });
});
