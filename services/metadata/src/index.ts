import type { Db } from '@berth/common/db';
import { migrate } from '@berth/common/db';
import { startOutboxRelay } from '@berth/common/outbox';
import type { EventPublisher } from '@berth/common/event-bus';
import type { Logger } from '@berth/common/log';
import type { ServiceModule } from '@berth/common/service';
import { NamespacesService } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import { migrations } from './db/migrations.js';
import { namespaceEvents } from './events.js';
import { createNamespacesServer } from './grpc/namespaces-server.js';
import { createNamespaceStore } from './namespaces/store.js';
import type { NamespaceUsage } from '@berth/common/namespace-usage';

export interface MetadataDeps {
  readonly db: Db;
  readonly bus: EventPublisher;
  readonly log: Logger;
  /** Other owners of namespaced resources (content, snapshots) consulted before a namespace is deleted. */
  readonly usage?: readonly NamespaceUsage[];
}

export interface MetadataModule extends ServiceModule {
  /** Resolves once every committed event has reached the bus. */
  flushEvents(): Promise<void>;
}

/** Builds the metadata service: runs its migrations, starts its outbox relay, returns its gRPC services. */
export async function createMetadataModule(deps: MetadataDeps): Promise<MetadataModule> {
  const log = deps.log.child({ service: 'metadata' });
  await migrate(deps.db, 'metadata', migrations);
  const relay = startOutboxRelay({ db: deps.db, schema: 'metadata', bus: deps.bus, log });
  const namespaces = createNamespaceStore({
    db: deps.db,
    events: namespaceEvents,
    usage: deps.usage ?? [],
    onCommit: relay.kick,
  });
  return {
    name: 'metadata',
    grpc: [{ definition: NamespacesService, implementation: createNamespacesServer(namespaces, log) }],
    plugins: [
      { type: 'io.containerd.metadata.v1', id: 'postgres', exports: { backend: deps.db.kind } },
      { type: 'io.containerd.grpc.v1', id: 'namespaces', requires: ['io.containerd.metadata.v1'] },
    ],
    async notReady() {
      try {
        await deps.db.query('SELECT 1');
        return undefined;
      } catch (e) {
        return `database: ${(e as Error).message}`;
      }
    },
    flushEvents: relay.flush,
    close: relay.close,
  };
}
