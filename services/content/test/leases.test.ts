import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BoundServer, createServer, listen } from '@berth/common/grpc-server';
import { LeasesService } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesService } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, md, sha256, startHarness, writeBlob } from './harness.js';

interface Recorded {
  readonly call: string;
  readonly namespace: string | undefined;
  readonly args: unknown;
}

/**
 * A stand-in for the metadata service's public API, recording what content asks of it: Namespaces.Create,
 * and Leases.AddResource/DeleteResource unless `leases` is false (a metadata that has no Leases yet).
 */
async function fakeMetadata(dir: string, leases: boolean): Promise<{ bound: BoundServer; calls: Recorded[] }> {
  const calls: Recorded[] = [];
  const ns = (c: grpc.ServerUnaryCall<unknown, unknown>): string | undefined =>
    c.metadata.get('containerd-namespace')[0]?.toString();
  const server = createServer();
  const known = new Set<string>();
  server.addService(NamespacesService, {
    create: (c: grpc.ServerUnaryCall<{ namespace?: { name: string } }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const name = c.request.namespace?.name ?? '';
      calls.push({ call: 'namespaces.create', namespace: ns(c), args: name });
      if (known.has(name))
        return cb({ code: grpc.status.ALREADY_EXISTS, details: `namespace "${name}": already exists` });
      known.add(name);
      cb(null, { namespace: { name, labels: {} } });
    },
  });
  if (leases) {
    const record =
      (call: string) =>
      (
        c: grpc.ServerUnaryCall<{ id: string; resource?: { id: string; type: string } }, unknown>,
        cb: grpc.sendUnaryData<unknown>,
      ) => {
        calls.push({ call, namespace: ns(c), args: { lease: c.request.id, ...c.request.resource } });
        if (c.request.id === 'missing')
          return cb({ code: grpc.status.NOT_FOUND, details: 'lease does not exist: not found' });
        cb(null, {});
      };
    server.addService(LeasesService, {
      addResource: record('leases.addResource'),
      deleteResource: record('leases.deleteResource'),
    });
  }
  const bound = await listen(server, join(dir, `meta-${leases}.sock`));
  return { bound, calls };
}

describe('content asks metadata for namespaces and leases', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-content-leases-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const leases of [true, false]) {
    describe(leases ? 'metadata with Leases' : 'metadata without Leases (Unimplemented)', () => {
      let meta: Awaited<ReturnType<typeof fakeMetadata>>;
      let h: Harness;
      beforeAll(async () => {
        meta = await fakeMetadata(dir, leases);
        h = await startHarness({ kind: 'fs', root: join(dir, `blobs-${leases}`) }, undefined, meta.bound.address);
      });
      afterAll(async () => {
        await h.close();
        await meta.bound.close(100);
      });

      it('creates the namespace once and attaches the ingest, then the committed blob, to the lease', async () => {
        const data = Buffer.from(`leased ${leases}`);
        const dgst = sha256(data);
        await writeBlob(h.client, 'leased-ns', 'lease-ref', data, { expected: dgst, lease: 'lease-1' });
        await writeBlob(h.client, 'leased-ns', 'second', Buffer.from('second blob'), { lease: 'lease-1' });
        expect(meta.calls.filter((c) => c.call === 'namespaces.create')).toEqual([
          { call: 'namespaces.create', namespace: 'leased-ns', args: 'leased-ns' },
        ]);
        const leaseCalls = meta.calls.filter((c) => c.call.startsWith('leases.')).slice(0, 3);
        if (leases) {
          expect(leaseCalls).toEqual([
            {
              call: 'leases.addResource',
              namespace: 'leased-ns',
              args: { lease: 'lease-1', id: 'lease-ref', type: 'ingests' },
            },
            // The blob is held before its record commits, and only then is the ingest let go: a collection
            // between any two of these steps finds it held (gc never races a commit).
            {
              call: 'leases.addResource',
              namespace: 'leased-ns',
              args: { lease: 'lease-1', id: dgst, type: 'content' },
            },
            {
              call: 'leases.deleteResource',
              namespace: 'leased-ns',
              args: { lease: 'lease-1', id: 'lease-ref', type: 'ingests' },
            },
          ]);
        } else {
          expect(leaseCalls).toEqual([]);
        }
        const info = await new Promise((resolve, reject) =>
          h.client.info({ digest: dgst }, md('leased-ns'), (e, r) => (e ? reject(e) : resolve(r?.info?.size))),
        );
        expect(info).toBe(data.length);
      });

      if (leases)
        it('fails the write when the lease does not exist, as containerd does', async () => {
          const err = await writeBlob(h.client, 'leased-ns', 'no-lease', Buffer.from('x'), { lease: 'missing' }).then(
            () => undefined,
            (e: grpc.ServiceError) => e,
          );
          expect(err?.code).toBe(grpc.status.NOT_FOUND);
          expect(err?.details).toBe('lease does not exist: not found');
          const status = await new Promise<number>((resolve) =>
            h.client.status({ ref: 'no-lease' }, md('leased-ns'), (e) => resolve(e?.code ?? 0)),
          );
          expect(status).toBe(grpc.status.NOT_FOUND);
        });
    });
  }
});
