import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { collectableRegistration } from '@berth/common/collectable';
import { type Db, openDb } from '@berth/common/db';
import { createInProcessBus, type EventBus } from '@berth/common/event-bus';
import { createServer, listen } from '@berth/common/grpc-server';
import { type Closer, closeAll } from '@berth/common/lifecycle';
import type { Logger } from '@berth/common/log';
import { type NamespaceUsage, namespaceUsageClient, namespaceUsageRegistration } from '@berth/common/namespace-usage';
import { registerAll, type ServiceModule } from '@berth/common/service';
import { type BlobBackendConfig, type ContentModule, createContentModule, type IngestObserver } from '@berth/content';
import { createDiffModule } from '@berth/diff';
import { createEventsModule } from '@berth/events';
import { type BerthServiceName, createGatewayModule, loadNodeUuid } from '@berth/gateway';
import {
  createGcModule,
  type GcModule,
  inProcessOwners,
  remoteOwners,
  type SchedulerConfig,
  startElection,
} from '@berth/gc';
import { gcClient } from '@berth/gc/client';
import { createMetadataModule, type GarbageCollector, type MetadataModule } from '@berth/metadata';
import { type InProcessMetadata, inProcessMetadata } from '@berth/metadata/client';
import { createSnapshotsModule, type SnapshotCallObserver, type SnapshotsModule } from '@berth/snapshots';
import { createTasksModule } from '@berth/tasks';
import type { BerthdConfig } from './config.js';

export const version = { version: '1.6.20+berth.0.1.0', revision: process.env['BERTH_REVISION'] ?? 'dev' };

/**
 * What a process runs: every implemented service (all-in-one); a node (its gateway on the node socket plus the
 * node-scoped snapshots, diff and tasks, reaching the cluster services at their configured addresses); or one
 * service alone, or the gateway alone.
 */
export type Role =
  | { readonly kind: 'all' }
  | { readonly kind: 'node' }
  | { readonly kind: 'serve'; readonly service: BerthServiceName | 'gateway' };

/** The services every node runs itself; the rest are cluster services reached through their addresses. */
export const nodeServices = ['snapshots', 'diff', 'tasks'] as const satisfies readonly BerthServiceName[];

/** The services built so far; the rest are reached through the gateway when configured. */
const implemented = [
  'metadata',
  'events',
  'snapshots',
  'content',
  'tasks',
  'diff',
] as const satisfies readonly BerthServiceName[];
type Implemented = (typeof implemented)[number];

export interface RunningNode {
  /** The address clients dial (`unix:///…` or `host:port`). */
  readonly address: string;
  readonly httpUrl: string | undefined;
  readonly modules: readonly ServiceModule[];
  /** The event bus this process publishes to (opened on first use); lets an embedding host subscribe. */
  bus(): Promise<EventBus>;
  close(): Promise<void>;
}

/** Starts a Berth process for `role`: opens its dependencies, builds its modules, serves them. */
export async function startNode(cfg: BerthdConfig, role: Role, log: Logger): Promise<RunningNode> {
  const closers: Closer[] = [];
  try {
    const servesGc = role.kind === 'serve' && role.service === 'gc';
    const local: Implemented[] = servesGc
      ? []
      : role.kind === 'all'
        ? [...implemented]
        : role.kind === 'node'
          ? [...nodeServices]
          : role.service === 'gateway'
            ? []
            : [requireImplemented(role.service)];
    if (role.kind === 'node') {
      const missing = (['metadata', 'content', 'events'] as const).filter((s) => !cfg.services[s].address);
      if (missing.length > 0)
        throw new Error(`serve node needs the addresses of ${missing.join(', ')} (e.g. metadata.address)`);
    }
    if (role.kind === 'serve' && role.service === 'events' && !cfg.nats) {
      throw new Error("serve events needs --nats: alone, an in-process bus would see no other service's events");
    }
    // Modules built beside metadata call its domain layer rather than this node's socket.
    const lazy = lazyDeps(cfg, log, closers, local.includes('metadata') ? inProcessMetadata() : undefined);
    // All-in-one runs the collector in process; metadata's sync deletes wait on it once it is built.
    let collector: GcModule | undefined;
    const remoteGc = role.kind !== 'all' && cfg.services.gc.address ? gcClient(cfg.services.gc.address) : undefined;
    if (remoteGc) closers.push({ name: 'gc-client', close: async () => remoteGc.close() });
    lazy.gc = {
      collect: async (ctx) => {
        if (collector) await collector.collect(ctx);
        else if (remoteGc) await remoteGc.collect(ctx);
      },
    };
    const modules: ServiceModule[] = [];
    // Metadata goes last: before deleting a namespace it asks the owners of the other namespaced resources.
    for (const name of [...local].sort((a, b) => Number(a === 'metadata') - Number(b === 'metadata'))) {
      const usage = name === 'metadata' ? namespaceUsageOf(cfg, modules, local, closers) : [];
      const m = await buildModule(name, lazy, usage, modules);
      modules.push(m);
      closers.push({ name, close: () => m.close() });
    }

    if (servesGc) {
      const built = await remoteCollector(cfg, lazy);
      modules.push(built);
      closers.push({ name: 'gc', close: () => built.close() });
    }
    if (role.kind === 'all') {
      collector = await inProcessCollector(cfg, lazy, modules);
      modules.push(collector);
      const built = collector;
      // Closed first (closers run in reverse): a collection in flight still needs the others' database.
      closers.push({ name: 'gc', close: () => built.close() });
    }

    const upstreams: Partial<Record<BerthServiceName, string>> = {};
    if (role.kind !== 'serve' || role.service === 'gateway') {
      for (const [name, svc] of Object.entries(cfg.services) as Array<[BerthServiceName, { address?: string }]>) {
        if (svc.address && !(local as string[]).includes(name)) upstreams[name] = svc.address;
      }
    }
    const gateway = createGatewayModule({
      log,
      build: version,
      uuid: await loadNodeUuid(join(cfg.root, 'node-uuid')),
      local: modules,
      upstreams,
    });
    closers.push({ name: 'gateway', close: () => gateway.close() });

    const server = createServer();
    registerAll(server, [gateway, ...modules]);
    // A node's own collectable resources (its snapshots), for a collector in another pod or host: served
    // alone on `--listen`, so the node's full API stays on its socket.
    const collectableServer = role.kind === 'node' && cfg.listen ? createServer() : undefined;
    if (role.kind !== 'all') {
      // Apart from the collector, an owner of collectable resources answers it over gRPC.
      for (const m of modules)
        if (m.collectable) {
          const r = collectableRegistration(await lazy.db(), m.collectable, log);
          server.addService(r.definition, r.implementation);
          collectableServer?.addService(r.definition, r.implementation);
        }
    }
    if (role.kind === 'serve') {
      // Alone, a service answers metadata's namespace-usage questions over gRPC.
      for (const m of modules)
        if (m.namespaceUsage) {
          const r = namespaceUsageRegistration(m.namespaceUsage, log);
          server.addService(r.definition, r.implementation);
        }
    }
    const address =
      role.kind === 'serve' && role.service !== 'gateway' ? serviceListenAddress(cfg, role.service) : cfg.address;
    if (address.startsWith('/') || address.startsWith('unix://')) {
      await mkdir(dirname(address.replace(/^unix:\/\//, '')), { recursive: true, mode: 0o711 });
    }
    const bound = await listen(server, address);
    closers.push({ name: 'grpc', close: () => bound.close() });
    log.info('serving', { address: bound.address, services: [gateway, ...modules].map((m) => m.name) });
    if (collectableServer && cfg.listen) {
      const extra = await listen(collectableServer, cfg.listen);
      closers.push({ name: 'grpc-collectable', close: () => extra.close() });
      log.info('serving the collectable snapshots', { address: extra.address });
    }

    let httpUrl: string | undefined;
    if (cfg.http) {
      // Loaded only when asked for, as the NATS client below: fastify is 1.6 MB of heap an embedded daemon without
      // --http never uses.
      const { createOpsServer } = await import('@berth/common/http-server');
      const ops = createOpsServer({
        log,
        service: role.kind === 'serve' ? role.service : role.kind === 'node' ? 'node' : 'berthd',
        notReady: async () => {
          for (const m of [gateway, ...modules]) {
            const reason = await m.notReady?.();
            if (reason) return `${m.name}: ${reason}`;
          }
          return undefined;
        },
      });
      for (const m of [gateway, ...modules]) m.http?.(ops.app, ops.registry);
      httpUrl = await ops.listen(cfg.http);
      closers.push({ name: 'http', close: () => ops.close() });
    }

    return {
      address: bound.address,
      httpUrl,
      modules,
      bus: lazy.bus,
      close: () => closeAll(closers, log),
    };
  } catch (e) {
    await closeAll(closers, log);
    throw e;
  }
}

/**
 * Where a process serving `service` alone listens: `--listen`, else the service's configured address when it
 * names one endpoint (`dns:///name:port` → every interface on that port), else the node socket.
 */
export function serviceListenAddress(cfg: BerthdConfig, service: BerthServiceName): string {
  if (cfg.listen) return cfg.listen;
  const configured = cfg.services[service].address;
  if (!configured) return cfg.address;
  const dns = /^dns:(?:\/\/[^/]*\/)?[^:]+:(\d+)$/.exec(configured);
  if (dns) return `0.0.0.0:${dns[1]}`;
  if (configured.includes(','))
    throw new Error(`${service}.address lists several replicas: give this one's own address with --listen`);
  return configured;
}

function requireImplemented(name: BerthServiceName): Implemented {
  if ((implemented as readonly string[]).includes(name)) return name as Implemented;
  throw new Error(`service ${name} is not implemented yet`);
}

interface LazyDeps {
  readonly log: Logger;
  readonly cfg: BerthdConfig;
  /** Metadata built in this process, for the modules that use it; undefined when it runs elsewhere. */
  readonly metadata: InProcessMetadata | undefined;
  /** What metadata's sync deletes wait for (the in-process collector, all-in-one). */
  gc: GarbageCollector | undefined;
  db(): Promise<Db>;
  bus(): Promise<EventBus>;
}

/** Opens each dependency on first use only, so a process serving the gateway alone needs no database. */
function lazyDeps(
  cfg: BerthdConfig,
  log: Logger,
  closers: Closer[],
  metadata: InProcessMetadata | undefined,
): LazyDeps {
  let db: Promise<Db> | undefined;
  let bus: Promise<EventBus> | undefined;
  return {
    log,
    cfg,
    metadata,
    gc: undefined,
    db: () =>
      (db ??= (async () => {
        let url = cfg.postgres;
        if (!url) {
          const dir = join(cfg.root, 'db');
          await mkdir(dir, { recursive: true, mode: 0o700 });
          url = `pglite://${dir}`;
        }
        const opened = await openDb(url);
        closers.push({ name: 'db', close: () => opened.close() });
        return opened;
      })()),
    bus: () =>
      (bus ??= (async () => {
        const retention = {
          node: cfg.node,
          maxAgeMs: cfg.events.maxAgeSeconds * 1000,
          ...(cfg.events.maxEvents > 0 ? { maxEvents: cfg.events.maxEvents } : {}),
        };
        const opened = cfg.nats
          ? await (await import('@berth/common/nats-event-bus')).createNatsBus({ url: cfg.nats, log, ...retention })
          : createInProcessBus(retention);
        closers.push({ name: 'events', close: () => opened.close() });
        return opened;
      })()),
  };
}

/** Who metadata asks before deleting a namespace: local modules directly, remote services over gRPC. */
function namespaceUsageOf(
  cfg: BerthdConfig,
  built: readonly ServiceModule[],
  local: readonly Implemented[],
  closers: Closer[],
): NamespaceUsage[] {
  const usage: NamespaceUsage[] = built.flatMap((m) => (m.namespaceUsage ? [m.namespaceUsage] : []));
  for (const name of ['content', 'snapshots'] as const) {
    const address = cfg.services[name].address;
    if (address && !(local as readonly string[]).includes(name)) {
      const client = namespaceUsageClient(address);
      closers.push({ name: `${name}-usage`, close: async () => client.close() });
      usage.push(client);
    }
  }
  return usage;
}

async function buildModule(
  name: Implemented,
  deps: LazyDeps,
  usage: readonly NamespaceUsage[],
  built: readonly ServiceModule[],
): Promise<ServiceModule> {
  switch (name) {
    case 'metadata': {
      const db = await deps.db();
      const m = await createMetadataModule({
        db,
        bus: await deps.bus(),
        log: deps.log,
        usage,
        stallMs: deps.cfg.stallTimeoutMs,
        ...(deps.gc ? { gc: deps.gc } : {}),
      });
      // The Db object the other modules of this process are given too: content's commit then joins metadata's
      // lease changes to its own transaction.
      deps.metadata?.bind(m.stores, db);
      return m;
    }
    case 'events':
      // All-in-one: the same bus object the other modules publish to. Alone: JetStream (checked in startNode).
      return createEventsModule({ bus: await deps.bus(), log: deps.log });
    case 'snapshots':
      return createSnapshotsModule({
        db: await deps.db(),
        bus: await deps.bus(),
        log: deps.log,
        root: join(deps.cfg.root, 'snapshots'),
        node: await loadNodeUuid(join(deps.cfg.root, 'node-uuid')),
        nodeName: deps.cfg.node,
        stallMs: deps.cfg.stallTimeoutMs,
        // Namespaces and leases: metadata in this process, else at its own address, else through this node's socket.
        ...(deps.metadata
          ? { metadata: deps.metadata.client(deps.log.child({ service: 'snapshots' })) }
          : { metadataAddress: deps.cfg.services.metadata.address ?? deps.cfg.address }),
      });
    case 'diff': {
      // Content built in this process (before diff: see the order in startNode) serves layer reads directly.
      const content = built.find((m): m is ContentModule => m.name === 'content');
      const snapshots = built.find((m): m is SnapshotsModule => m.name === 'snapshots');
      return createDiffModule({
        log: deps.log,
        ...(content
          ? { localRead: content.read, observeIngests: (o: IngestObserver) => content.observeIngests(o) }
          : {}),
        ...(snapshots ? { observeSnapshotCalls: (o: SnapshotCallObserver) => snapshots.observeCalls(o) } : {}),
        // Layers stream from content: its own address when served apart, else this node's socket.
        contentAddress: deps.cfg.services.content.address ?? deps.cfg.address,
        tmpRoot: join(deps.cfg.state, 'diff'),
        stallMs: deps.cfg.stallTimeoutMs,
        // Beside <root>/snapshots, on its filesystem: a staged layer moves into its snapshot by rename.
        ...(deps.cfg.unpack.ahead
          ? { aheadRoot: join(deps.cfg.root, 'diff-ahead'), aheadConcurrency: deps.cfg.unpack.aheadConcurrency }
          : {}),
      });
    }
    case 'tasks':
      return createTasksModule({
        bus: await deps.bus(),
        log: deps.log,
        state: deps.cfg.state,
        node: await loadNodeUuid(join(deps.cfg.root, 'node-uuid')),
        supervisorTimeoutMs: deps.cfg.stallTimeoutMs,
        // Container records: from metadata in this process, else at its own address, else through this node's socket.
        ...(deps.metadata
          ? { containers: deps.metadata.containers }
          : { metadataAddress: deps.cfg.services.metadata.address ?? deps.cfg.address }),
      });
    case 'content':
      return createContentModule({
        db: await deps.db(),
        bus: await deps.bus(),
        log: deps.log,
        backend: contentBackend(deps.cfg),
        stallMs: deps.cfg.stallTimeoutMs,
        // Namespaces and leases: metadata in this process, else at its own address, else through this node's socket.
        ...(deps.metadata
          ? { metadata: deps.metadata.client(deps.log.child({ service: 'content' })) }
          : { metadataAddress: deps.cfg.services.metadata.address ?? deps.cfg.address }),
      });
  }
}

/** All-in-one: the collector over the metadata, content and snapshots modules of this process. */
async function inProcessCollector(
  cfg: BerthdConfig,
  deps: LazyDeps,
  modules: readonly ServiceModule[],
): Promise<GcModule> {
  const find = <M extends ServiceModule>(name: string): M => {
    const m = modules.find((x) => x.name === name);
    if (!m) throw new Error(`gc needs the ${name} module in this process`);
    return m as M;
  };
  const metadata = find<MetadataModule>('metadata');
  const content = find<ContentModule>('content');
  const snapshots = find<SnapshotsModule>('snapshots');
  const node = await loadNodeUuid(join(cfg.root, 'node-uuid'));
  const g = cfg.gc;
  return createGcModule({
    log: deps.log,
    bus: await deps.bus(),
    scheduler: schedulerConfigOf(g),
    owners: inProcessOwners(
      await deps.db(),
      {
        metadata: metadata.collectable,
        content: content.collectable,
        snapshots: snapshots.collectable,
        node: { name: node, reconcile: () => snapshots.reconcile() },
      },
      {
        // On a filesystem the content lock covers a commit; S3 uploaders may be other nodes.
        contentGraceMs: cfg.content.backend === 's3' ? g.contentGraceSeconds * 1000 : 0,
        deleteTimeoutMs: g.deleteTimeoutMs,
      },
      deps.log,
    ),
  });
}

/**
 * `serve gc`: one of N collector replicas. They elect a leader on Postgres; the leader reads and sweeps the
 * owners over berth.internal.v1.Collectable (metadata, content, and a node's snapshots at their addresses).
 */
async function remoteCollector(cfg: BerthdConfig, deps: LazyDeps): Promise<GcModule> {
  if (!cfg.postgres)
    throw new Error('serve gc needs --postgres: the leader election and the collection lock live there');
  const need = (['metadata', 'content', 'snapshots'] as const).filter((s) => !cfg.services[s].address);
  if (need.length > 0)
    throw new Error(`serve gc needs the addresses of ${need.join(', ')} (e.g. snapshots.address: a node)`);
  const address = (s: 'metadata' | 'content' | 'snapshots'): string => cfg.services[s].address ?? '';
  const election = startElection({ url: cfg.postgres, log: deps.log });
  const g = cfg.gc;
  const owners = remoteOwners(
    election,
    { metadata: address('metadata'), content: address('content'), snapshots: address('snapshots') },
    {
      contentGraceMs: cfg.content.backend === 's3' ? g.contentGraceSeconds * 1000 : 0,
      deleteTimeoutMs: g.deleteTimeoutMs,
    },
    deps.log,
    await deps.db(),
  );
  return createGcModule({
    log: deps.log,
    ...(cfg.nats ? { bus: await deps.bus() } : {}),
    scheduler: schedulerConfigOf(g),
    owners,
    isLeader: () => election.isLeader(),
    onClose: async () => {
      owners.close();
      await election.close();
    },
  });
}

/** The blob backend from `content.*` config: fs under <root>/content, or an S3 bucket. */
function contentBackend(cfg: BerthdConfig): BlobBackendConfig {
  if (cfg.content.backend === 'fs') return { kind: 'fs', root: join(cfg.root, 'content') };
  const s3 = cfg.content.s3;
  if (!s3.endpoint) throw new Error('content.backend s3 needs content.s3.endpoint');
  const url = new URL(s3.endpoint);
  const useSSL = url.protocol === 'https:';
  return {
    kind: 's3',
    endPoint: url.hostname,
    port: url.port ? Number(url.port) : useSSL ? 443 : 80,
    useSSL,
    accessKey: s3.accessKey,
    secretKey: s3.secretKey,
    region: s3.region,
    bucket: s3.bucket,
    prefix: s3.prefix,
    partSize: s3.partSize,
  };
}

/** containerd's scheduler knobs, and Berth's, from the `gc.*` configuration. */
function schedulerConfigOf(g: BerthdConfig['gc']): SchedulerConfig {
  return {
    pauseThreshold: g.pauseThreshold,
    deletionThreshold: g.deletionThreshold,
    mutationThreshold: g.mutationThreshold,
    scheduleDelayMs: g.scheduleDelayMs,
    startupDelayMs: g.startupDelayMs,
    idleIntervalMs: g.idleIntervalMs,
    automatic: g.automatic,
  };
}
