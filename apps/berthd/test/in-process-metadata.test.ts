import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backgroundContext, type RequestContext } from '@berth/common/context';
import { type Db, openDb } from '@berth/common/db';
import type { ServiceError } from '@berth/common/errors';
import { createInProcessBus } from '@berth/common/event-bus';
import { invoke } from '@berth/common/grpc-client';
import { type BoundServer, createServer, listen } from '@berth/common/grpc-server';
import { createLogger, type Logger, nopLogger } from '@berth/common/log';
import { registerAll } from '@berth/common/service';
import type { GcClient } from '@berth/gc/client';
import { createMetadataModule, type MetadataModule } from '@berth/metadata';
import {
  type ContainerRecords,
  inProcessMetadata,
  type MetadataClient,
  remoteContainers,
  remoteMetadata,
} from '@berth/metadata/client';
import { ContainersClient } from '@berth/proto/containerd/services/containers/v1/containers';
import { ContentClient, WriteAction } from '@berth/proto/containerd/services/content/v1/content';
import { LeasesClient } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesClient } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import { SnapshotsClient } from '@berth/proto/containerd/services/snapshots/v1/snapshots';
import { TasksClient } from '@berth/proto/containerd/services/tasks/v1/tasks';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningNode, startNode } from '../src/compose.js';
import { loadConfig } from '../src/config.js';

/** The outcome of `p` as comparable data: its value, or its error's code and message. */
async function outcome(p: Promise<unknown>): Promise<unknown> {
  try {
    return { value: await p };
  } catch (e) {
    return { code: (e as ServiceError).code, message: (e as ServiceError).message };
  }
}

const ctxIn = (namespace: string | undefined, lease?: string): RequestContext => ({
  ...backgroundContext(nopLogger, namespace),
  lease,
});

const spec = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Spec', value: Buffer.from('{"a":1}') };

describe('in-process metadata clients answer as the gRPC ones do', () => {
  let dir: string;
  let module: MetadataModule;
  let bound: BoundServer;
  let remote: { containers: ContainerRecords; metadata: MetadataClient };
  let local: { containers: ContainerRecords; metadata: MetadataClient };
  let db: Db;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-local-metadata-'));
    db = await openDb('pglite://memory');
    module = await createMetadataModule({ db, bus: createInProcessBus(), log: nopLogger });
    const server = createServer();
    registerAll(server, [module]);
    bound = await listen(server, join(dir, 'm.sock'));
    remote = { containers: remoteContainers(bound.address), metadata: remoteMetadata(bound.address, nopLogger) };
    const inProcess = inProcessMetadata();
    inProcess.bind(module.stores, db);
    local = { containers: inProcess.containers, metadata: inProcess.client(nopLogger) };
    await module.stores.containers.create(ctxIn('p'), {
      id: 'c1',
      labels: {},
      image: 'busybox',
      runtime: { name: 'io.containerd.runc.v2' },
      spec,
      snapshotter: 'overlayfs',
      snapshotKey: 'c1',
      extensions: {},
    });
    await module.stores.leases.create(ctxIn('p'), 'l1', {});
  });
  afterAll(async () => {
    remote?.containers.close();
    remote?.metadata.close();
    await bound?.close(100);
    await module?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('Containers.Get: the record, and the same errors, namespace from the context and lease ignored', async () => {
    const cases: Array<[RequestContext, string]> = [
      [ctxIn('p'), 'c1'],
      [ctxIn('p', 'no-such-lease'), 'c1'],
      [ctxIn('p'), 'nope'],
      [ctxIn('empty-ns'), 'c1'],
      [ctxIn(undefined), 'c1'],
      [ctxIn(''), 'c1'],
      [ctxIn('Bad_Namespace!'), 'c1'],
    ];
    for (const [ctx, id] of cases) {
      const want = await outcome(remote.containers.get(ctx, id));
      expect(await outcome(local.containers.get(ctx, id))).toEqual(want);
    }
    expect(await outcome(local.containers.get(ctxIn('p'), 'c1'))).toEqual({
      value: { id: 'c1', runtime: 'io.containerd.runc.v2', spec: spec.value, specTypeUrl: spec.typeUrl },
    });
    expect(await outcome(local.containers.get(ctxIn('p'), 'nope'))).toEqual({
      code: 'not_found',
      message: 'container "nope" in namespace "p": not found',
    });
  });

  it('Leases.AddResource: the same errors for an unknown lease, a bad resource, no namespace', async () => {
    const cases: Array<[RequestContext, string, string]> = [
      [ctxIn('p', 'l1'), 'content', `sha256:${'c'.repeat(64)}`],
      [ctxIn('p', 'missing'), 'content', `sha256:${'c'.repeat(64)}`],
      [ctxIn('p', 'missing'), 'content', 'sha256:short'],
      [ctxIn('p', 'l1'), 'content', 'sha256:short'],
      [ctxIn('p', 'l1'), 'images', 'x'],
      [ctxIn('other', 'l1'), 'ingests', 'ref'],
      [ctxIn(undefined, 'l1'), 'ingests', 'ref'],
      [ctxIn('p'), 'ingests', 'ref'],
    ];
    for (const [ctx, type, id] of cases) {
      const want = await outcome(remote.metadata.addLeaseResource(ctx, type, id));
      expect(await outcome(local.metadata.addLeaseResource(ctx, type, id))).toEqual(want);
    }
    expect(await outcome(local.metadata.addLeaseResource(ctxIn('p', 'missing'), 'content', 'sha256:short'))).toEqual({
      code: 'not_found',
      message: 'lease "missing": not found',
    });
    expect(await module.stores.leases.listResources(ctxIn('p'), 'l1')).toEqual([
      { id: `sha256:${'c'.repeat(64)}`, type: 'content' },
    ]);
  });

  it('Leases.DeleteResource never rejects; Namespaces.Create brings a namespace into being', async () => {
    for (const peer of [remote.metadata, local.metadata]) {
      await peer.removeLeaseResource(ctxIn('p', 'missing'), 'content', `sha256:${'c'.repeat(64)}`);
      await peer.removeLeaseResource(ctxIn('p', 'l1'), 'images', 'x');
    }
    await local.metadata.removeLeaseResource(ctxIn('p', 'l1'), 'content', `sha256:${'c'.repeat(64)}`);
    expect(await module.stores.leases.listResources(ctxIn('p'), 'l1')).toEqual([]);
    await local.metadata.ensureNamespace(ctxIn('fresh', 'l1'), 'fresh');
    await local.metadata.ensureNamespace(ctxIn('fresh'), 'fresh');
    expect((await module.stores.namespaces.list(ctxIn(undefined))).map((n) => n.name)).toContain('fresh');
  });

  it("changes lease resources inside a caller's transaction on metadata's database, and only there", async () => {
    expect(remote.metadata.leaseResourcesIn?.(db)).toBeUndefined();
    expect(local.metadata.leaseResourcesIn?.(await openDb('pglite://memory'))).toBeUndefined();
    const joined = local.metadata.leaseResourcesIn?.(db);
    if (!joined) throw new Error('no lease resources in a transaction on the bound database');
    const blob = `sha256:${'d'.repeat(64)}`;
    await expect(
      db.transaction(async (tx) => {
        await joined.add(tx, ctxIn('p', 'l1'), 'content', blob);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await module.stores.leases.listResources(ctxIn('p'), 'l1')).toEqual([]);
    await db.transaction(async (tx) => {
      await joined.add(tx, ctxIn('p', 'l1'), 'ingests', 'ref-j');
      await joined.add(tx, ctxIn('p'), 'content', blob);
    });
    await db.transaction(async (tx) => {
      await joined.add(tx, ctxIn('p', 'l1'), 'content', blob);
      await joined.remove(tx, ctxIn('p', 'l1'), 'ingests', 'ref-j');
      await joined.remove(tx, ctxIn('p', 'missing'), 'ingests', 'ref-j');
      await joined.remove(tx, ctxIn('p', 'l1'), 'images', 'x');
    });
    expect(await module.stores.leases.listResources(ctxIn('p'), 'l1')).toEqual([{ id: blob, type: 'content' }]);
    const failed = await outcome(db.transaction((tx) => joined.add(tx, ctxIn('p', 'missing'), 'content', blob)));
    expect(failed).toEqual(await outcome(remote.metadata.addLeaseResource(ctxIn('p', 'missing'), 'content', blob)));
    await local.metadata.removeLeaseResource(ctxIn('p', 'l1'), 'content', blob);
  });

  it('fails unavailable until metadata is bound, as a socket not yet listening would', async () => {
    const unbound = inProcessMetadata();
    expect((await outcome(unbound.containers.get(ctxIn('p'), 'c1'))) as { code: string }).toMatchObject({
      code: 'unavailable',
    });
  });
});

describe('all-in-one: tasks and content call metadata in process, not over the node socket', () => {
  let dir: string;
  let node: RunningNode;
  let lines: string[] = [];
  const clients: grpc.Client[] = [];

  /** The RPCs the node served that failed so far (the handlers log each at debug). */
  const failedRpcs = (): string[] =>
    lines
      .map((l) => JSON.parse(l) as { msg: string; rpc?: string })
      .filter((l) => l.msg === 'rpc failed' && l.rpc)
      .map((l) => l.rpc ?? '');

  const call = <Res>(
    ns: string,
    start: (
      md: grpc.Metadata,
      o: Partial<grpc.CallOptions>,
      cb: (e: grpc.ServiceError | null, r?: Res) => void,
    ) => grpc.ClientUnaryCall,
    lease?: string,
  ): Promise<Res> => invoke(start, { namespace: ns, lease, signal: new AbortController().signal });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-aio-'));
    const cfg = loadConfig({
      flags: { root: join(dir, 'root'), state: join(dir, 'state'), address: join(dir, 'berth.sock') },
    });
    const log: Logger = createLogger({ level: 'debug', write: (l) => void lines.push(l) });
    node = await startNode(cfg, { kind: 'all' }, log);
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await node?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const client = <C extends grpc.Client>(make: new (address: string, creds: grpc.ChannelCredentials) => C): C => {
    const c = new make(node.address, grpc.credentials.createInsecure());
    clients.push(c);
    return c;
  };

  it("Tasks.Get and Tasks.Create of a missing container fail with metadata's not_found, without a Containers RPC", async () => {
    const containers = client(ContainersClient);
    const tasks = client(TasksClient);
    // The control: a Containers.Get served over the socket shows up in the log.
    expect(await outcome(call('aio', (md, o, cb) => containers.get({ id: 'ghost' }, md, o, cb)))).toMatchObject({
      code: 'not_found',
    });
    expect(failedRpcs()).toEqual(['/containerd.services.containers.v1.Containers/Get']);
    lines = [];

    expect(
      await outcome(call('aio', (md, o, cb) => tasks.get({ containerId: 'nope', execId: '' }, md, o, cb))),
    ).toEqual({ code: 'not_found', message: 'container "nope" in namespace "aio": not found' });
    const create = {
      containerId: 'nope2',
      rootfs: [],
      stdin: '',
      stdout: '',
      stderr: '',
      terminal: false,
      checkpoint: undefined,
      options: undefined,
      runtimePath: '',
    };
    expect(await outcome(call('aio', (md, o, cb) => tasks.create(create, md, o, cb), 'some-lease'))).toEqual({
      code: 'not_found',
      message: 'container "nope2" in namespace "aio": not found',
    });
    await call('aio', (md, o, cb) =>
      containers.create(
        {
          container: {
            id: 'c1',
            labels: {},
            image: '',
            runtime: { name: 'io.containerd.runc.v2', options: undefined },
            spec,
            snapshotter: '',
            snapshotKey: '',
            createdAt: undefined,
            updatedAt: undefined,
            extensions: {},
          },
        },
        md,
        o,
        cb,
      ),
    );
    // The container is found in process: the task is what is missing.
    expect(await outcome(call('aio', (md, o, cb) => tasks.get({ containerId: 'c1', execId: '' }, md, o, cb)))).toEqual({
      code: 'not_found',
      message: 'task c1 not found',
    });
    expect(failedRpcs()).toEqual([
      '/containerd.services.tasks.v1.Tasks/Get',
      '/containerd.services.tasks.v1.Tasks/Create',
      '/containerd.services.tasks.v1.Tasks/Get',
    ]);
  });

  it("Content.Write under an unknown lease fails with metadata's not_found, without a Leases RPC", async () => {
    const leases = client(LeasesClient);
    const content = client(ContentClient);
    const namespaces = client(NamespacesClient);
    lines = [];
    const resource = { id: 'ref', type: 'ingests' };
    expect(await outcome(call('aio2', (md, o, cb) => leases.addResource({ id: 'gone', resource }, md, o, cb)))).toEqual(
      {
        code: 'not_found',
        message: 'lease "gone": not found',
      },
    );
    expect(failedRpcs()).toEqual(['/containerd.services.leases.v1.Leases/AddResource']);
    lines = [];

    const md = new grpc.Metadata();
    md.set('containerd-namespace', 'aio2');
    md.set('containerd-lease', 'gone');
    const failed = await new Promise<grpc.ServiceError>((resolve, reject) => {
      const stream = content.write(md);
      stream.on('data', () => reject(new Error('the write was accepted')));
      stream.on('error', resolve);
      stream.write({
        action: WriteAction.WRITE,
        ref: 'ref',
        total: 3,
        expected: '',
        offset: 0,
        data: Buffer.from('abc'),
        labels: {},
      });
    });
    expect([failed.code, failed.details]).toEqual([grpc.status.NOT_FOUND, 'lease "gone": not found']);
    expect(failedRpcs()).toEqual(['/containerd.services.content.v1.Content/Write']);
    // Before the lease, content made sure the namespace exists, in process too.
    const listed = await call('', (m, o, cb) => namespaces.list({ filter: '' }, m, o, cb));
    expect(listed.namespaces.map((n) => n.name)).toContain('aio2');
  });

  it('a Content.Write committed under a lease leaves the lease holding the blob, not the ingest', async () => {
    const leases = client(LeasesClient);
    const content = client(ContentClient);
    await call('aio4', (md, o, cb) => leases.create({ id: 'pull', labels: {} }, md, o, cb));
    const data = Buffer.from('leased blob');
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const md = new grpc.Metadata();
    md.set('containerd-namespace', 'aio4');
    md.set('containerd-lease', 'pull');
    await new Promise<void>((resolve, reject) => {
      const stream = content.write(md);
      stream.on('data', (r: { action: WriteAction }) => {
        if (r.action === WriteAction.COMMIT) resolve();
      });
      stream.on('error', reject);
      const base = { ref: 'leased', total: data.length, expected: digest, offset: 0, labels: {} };
      stream.write({ ...base, action: WriteAction.WRITE, data });
      stream.write({ ...base, action: WriteAction.COMMIT, offset: data.length, data: Buffer.alloc(0) });
    });
    const listed = await call('aio4', (m, o, cb) => leases.listResources({ id: 'pull' }, m, o, cb));
    expect(listed.resources).toEqual([{ id: digest, type: 'content' }]);
  });

  it('collections back to back take none of the blobs committed meanwhile under a lease', async () => {
    const leases = client(LeasesClient);
    const content = client(ContentClient);
    const gc = node.modules.find((m) => m.name === 'gc') as unknown as GcClient;
    const ns = 'aio5';
    await call(ns, (md, o, cb) => leases.create({ id: 'pull', labels: {} }, md, o, cb));
    const md = new grpc.Metadata();
    md.set('containerd-namespace', ns);
    md.set('containerd-lease', 'pull');
    const write = (data: Buffer, ref: string): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
        const stream = content.write(md);
        stream.on('data', (r: { action: WriteAction }) => {
          if (r.action === WriteAction.COMMIT) resolve();
        });
        stream.on('error', reject);
        const base = { ref, total: data.length, expected: digest, offset: 0, labels: {} };
        stream.write({ ...base, action: WriteAction.WRITE, data });
        stream.write({ ...base, action: WriteAction.COMMIT, offset: data.length, data: Buffer.alloc(0) });
      });
    const blobs = Array.from({ length: 12 }, (_, i) => Buffer.from(`blob ${i} ${Date.now()}`));
    let writing = true;
    const collections = (async () => {
      let n = 0;
      while (writing || n === 0) {
        await gc.collect({ namespace: ns, lease: undefined, signal: new AbortController().signal });
        n++;
      }
      return n;
    })();
    await Promise.all(blobs.map((b, i) => write(b, `ref-${i}`)));
    writing = false;
    expect(await collections).toBeGreaterThan(0);
    await gc.collect({ namespace: ns, lease: undefined, signal: new AbortController().signal });
    const digests = blobs.map((b) => `sha256:${createHash('sha256').update(b).digest('hex')}`).sort();
    const listed = await call(ns, (m, o, cb) => leases.listResources({ id: 'pull' }, m, o, cb));
    expect(listed.resources.map((r) => `${r.type} ${r.id}`).sort()).toEqual(digests.map((d) => `content ${d}`));
    for (const digest of digests) {
      const info = await call(ns, (m, o, cb) => content.info({ digest }, m, o, cb));
      expect(info.info?.digest).toBe(digest);
    }
  });

  it("Snapshots.Prepare under an unknown lease fails with metadata's not_found, without a Leases RPC", async () => {
    const snapshots = client(SnapshotsClient);
    lines = [];
    const prepare = { snapshotter: 'overlayfs', key: 'k1', parent: '', labels: {} };
    expect(await outcome(call('aio3', (md, o, cb) => snapshots.prepare(prepare, md, o, cb), 'gone'))).toEqual({
      code: 'not_found',
      message: 'lease "gone": not found',
    });
    expect(failedRpcs()).toEqual(['/containerd.services.snapshots.v1.Snapshots/Prepare']);
    // Nothing was made: without the lease the same key prepares.
    const made = await call('aio3', (md, o, cb) => snapshots.prepare(prepare, md, o, cb));
    expect(made.mounts).toHaveLength(1);
  });
});
