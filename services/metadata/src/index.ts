import type { Db } from '@berth/common/db';
import { databaseNotReady, migrate } from '@berth/common/db';
import type { EventPublisher } from '@berth/common/event-bus';
import type { Logger } from '@berth/common/log';
import type { NamespaceUsage } from '@berth/common/namespace-usage';
import { startOutboxRelay } from '@berth/common/outbox';
import type { ServiceModule } from '@berth/common/service';
import { ContainersService } from '@berth/proto/containerd/services/containers/v1/containers';
import { ImagesService } from '@berth/proto/containerd/services/images/v1/images';
import { LeasesService } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesService } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import { type CollectableMetadata, createCollectableMetadata } from './collectable/store.js';
import { createContainerStore } from './containers/store.js';
import type { ContainerStore } from './containers/types.js';
import { migrations } from './db/migrations.js';
import { listenRowCaches } from './db/row-caches.js';
import { containerEvents, imageEvents, namespaceEvents } from './events.js';
import { type GarbageCollector, noGarbageCollector } from './gc.js';
import { createContainersServer } from './grpc/containers-server.js';
import { createImagesServer } from './grpc/images-server.js';
import { createLeasesServer } from './grpc/leases-server.js';
import { createNamespacesServer } from './grpc/namespaces-server.js';
import { createImageStore } from './images/store.js';
import type { ImageStore } from './images/types.js';
import { createLeaseStore } from './leases/store.js';
import type { LeaseStore } from './leases/types.js';
import { createNamespaceStore } from './namespaces/store.js';
import type { NamespaceStore } from './namespaces/types.js';

export type { CollectableMetadata, MetadataReferences, MetadataRemoval } from './collectable/store.js';
export type { Container, ContainerStore } from './containers/types.js';
/** The metadata schema's migrations, for `berthd migrate` (the module also applies them when it starts). */
export { migrations } from './db/migrations.js';
export type { GarbageCollector } from './gc.js';
export type { Image, ImageStore } from './images/types.js';
export type { Lease, LeaseStore } from './leases/types.js';
export type { Namespace, NamespaceStore } from './namespaces/types.js';

export interface MetadataDeps {
  readonly db: Db;
  readonly bus: EventPublisher;
  readonly log: Logger;
  /** Other owners of namespaced resources (content, snapshots) consulted before a namespace is deleted. */
  readonly usage?: readonly NamespaceUsage[];
  /** Run by deletes that ask for `sync`; none by default (see GarbageCollector). */
  readonly gc?: GarbageCollector;
  /** How often the outbox relay looks for events committed by other replicas. Default 1 s. */
  readonly outboxPollMs?: number;
  /** How long a streaming call waits for a client that stopped reading (`stall-timeout-ms`); unset: the default. */
  readonly stallMs?: number;
}

/** Metadata's domain layer: what its gRPC services serve, for callers in the same process (all-in-one). */
export interface MetadataStores {
  readonly namespaces: NamespaceStore;
  readonly images: ImageStore;
  readonly containers: ContainerStore;
  readonly leases: LeaseStore;
}

export interface MetadataModule extends ServiceModule {
  readonly stores: MetadataStores;
  /** What the garbage collector reads and removes here (in process; remote collectors use its gRPC service). */
  readonly collectable: CollectableMetadata;
  /** Resolves once every committed event has reached the bus. */
  flushEvents(): Promise<void>;
}

/**
 * Builds the metadata service: runs its migrations, listens for row changes to keep its caches coherent with
 * other replicas, starts its outbox relay, returns its gRPC services and their stores.
 */
export async function createMetadataModule(deps: MetadataDeps): Promise<MetadataModule> {
  const log = deps.log.child({ service: 'metadata' });
  await migrate(deps.db, 'metadata', migrations);
  const { rows, unlisten } = await listenRowCaches(deps.db);
  const relay = startOutboxRelay({
    db: deps.db,
    schema: 'metadata',
    bus: deps.bus,
    log,
    ...(deps.outboxPollMs !== undefined ? { pollMs: deps.outboxPollMs } : {}),
  });
  const gc = deps.gc ?? noGarbageCollector;
  const namespaces = createNamespaceStore({
    db: deps.db,
    events: namespaceEvents,
    usage: deps.usage ?? [],
    onCommit: relay.kick,
    rows: rows.namespaces,
  });
  const images = createImageStore({
    db: deps.db,
    events: imageEvents,
    onCommit: relay.kick,
    rows: rows.images,
    lists: rows.imageLists,
  });
  const containers = createContainerStore({
    db: deps.db,
    events: containerEvents,
    onCommit: relay.kick,
    rows: rows.containers,
  });
  const leases = createLeaseStore({ db: deps.db });
  return {
    name: 'metadata',
    grpc: [
      { definition: NamespacesService, implementation: createNamespacesServer(namespaces, log) },
      { definition: ImagesService, implementation: createImagesServer(images, gc, log) },
      {
        definition: ContainersService,
        implementation: createContainersServer(containers, log, { stallMs: deps.stallMs ?? 0 }),
      },
      { definition: LeasesService, implementation: createLeasesServer(leases, gc, log) },
    ],
    plugins: [
      { type: 'io.containerd.metadata.v1', id: 'postgres', exports: { backend: deps.db.kind } },
      { type: 'io.containerd.grpc.v1', id: 'namespaces', requires: ['io.containerd.metadata.v1'] },
      { type: 'io.containerd.grpc.v1', id: 'images', requires: ['io.containerd.metadata.v1'] },
      { type: 'io.containerd.grpc.v1', id: 'containers', requires: ['io.containerd.metadata.v1'] },
      { type: 'io.containerd.grpc.v1', id: 'leases', requires: ['io.containerd.metadata.v1'] },
    ],
    stores: { namespaces, images, containers, leases },
    collectable: createCollectableMetadata({ events: imageEvents }),
    notReady: () => databaseNotReady(deps.db),
    flushEvents: relay.flush,
    async close() {
      await relay.close();
      // Last: with the database unreachable, postgres.js waits for a connection to send UNLISTEN.
      await unlisten();
    },
  };
}
