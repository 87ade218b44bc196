import type { Db } from '@berth/common/db';
import { databaseNotReady, migrate } from '@berth/common/db';
import type { EventPublisher } from '@berth/common/event-bus';
import type { Logger } from '@berth/common/log';
import { startOutboxRelay } from '@berth/common/outbox';
import { listenRowCache, RowCache, rowKey } from '@berth/common/row-cache';
import type { ServiceModule } from '@berth/common/service';
import { type MetadataClient, noMetadata, remoteMetadata } from '@berth/metadata/client';
import { ContentService } from '@berth/proto/containerd/services/content/v1/content';
import type { LocalRead } from './client/local-reads.js';
import { type CollectableContent, createCollectableContent } from './collectable/store.js';
import { parseDigest } from './content/digest.js';
import type { IngestObserver } from './content/observer.js';
import { createContentStore } from './content/store.js';
import type { Info } from './content/types.js';
import { createContentRepo } from './db/content-repo.js';
import { blobsChannel, migrations } from './db/migrations.js';
import { contentDeleted } from './events.js';
import { createContentServer } from './grpc/content-server.js';
import { encodeReadResponse } from './grpc/read-codec.js';
import { decodeWriteRequest } from './grpc/write-codec.js';
import { type BlobBackendConfig, createBlobStore } from './store/index.js';

export type {
  BackendSweepOptions,
  BackendSweepResult,
  CollectableContent,
  ContentReferences,
  ContentRemoval,
} from './collectable/store.js';
/** The content schema's migrations, for `berthd migrate` (the module also applies them when it starts). */
export { migrations } from './db/migrations.js';
export type { BlobBackendConfig, S3Options } from './store/index.js';

export interface ContentDeps {
  readonly db: Db;
  readonly bus: EventPublisher;
  readonly log: Logger;
  readonly backend: BlobBackendConfig;
  /**
   * gRPC address of the metadata service (namespaces come into being, leases hold content). Unset runs
   * content alone: no namespace creation, no lease attachment.
   */
  readonly metadataAddress?: string;
  /** Metadata in this process (all-in-one), used instead of dialing `metadataAddress`; the caller closes it. */
  readonly metadata?: MetadataClient;
  /** How long a Write stream may bring nothing before it fails (deadline_exceeded); 0 = the default, 60 s. */
  readonly stallMs?: number;
  /** Write streams this process keeps open at once; more get RESOURCE_EXHAUSTED. Default 1024. */
  readonly maxOpenIngests?: number;
}

export interface ContentModule extends ServiceModule {
  /** What the garbage collector reads and removes here (in process). */
  readonly collectable: CollectableContent;
  /** Resolves once every committed event has reached the bus. */
  flushEvents(): Promise<void>;
  /** Content.Read in this process (whole blob), for a differ beside it (see withLocalReads). */
  readonly read: LocalRead;
  /** Tells `observer` of each Write as it opens and commits (one observer at a time); returns the unsubscribe. */
  observeIngests(observer: IngestObserver): () => void;
}

export type { IngestObserver, WriteTap } from './content/observer.js';

/** Builds the content service: migrations, Info cache and its listen, blob backend, outbox relay, gRPC service. */
export async function createContentModule(deps: ContentDeps): Promise<ContentModule> {
  const log = deps.log.child({ service: 'content' });
  await migrate(deps.db, 'content', migrations);
  const infos = new RowCache<Info | null>();
  // Other replicas and any other writer of content.blobs reach this cache only through these notifications.
  const unlisten = await listenRowCache(deps.db, blobsChannel, infos);
  const blobs = await createBlobStore(deps.backend);
  const relay = startOutboxRelay({ db: deps.db, schema: 'content', bus: deps.bus, log });
  const dialed = deps.metadata || !deps.metadataAddress ? undefined : remoteMetadata(deps.metadataAddress, log);
  const repo = createContentRepo(deps.db);
  if (deps.db.kind === 'pglite') {
    // An embedded database belongs to this process alone: a lock in it was left by an earlier process that
    // died mid-write, and would keep its ref from resuming until the lock's lease ran out.
    const stale = await repo.unlockAllIngests();
    if (stale > 0) log.warn('released ingest locks left by an earlier process', { ingests: stale });
  }
  let observer: IngestObserver | undefined;
  const store = createContentStore({
    repo,
    blobs,
    infos,
    metadata: deps.metadata ?? dialed ?? noMetadata,
    deleted: contentDeleted,
    onCommit: relay.kick,
    observer: {
      opened: (ns, expected, total) => {
        try {
          return observer?.opened(ns, expected, total);
        } catch (e) {
          log.warn('an ingest observer failed', { err: e });
          return undefined;
        }
      },
      committed: (ns, digest, size) => {
        try {
          observer?.committed(ns, digest, size);
        } catch (e) {
          log.warn('an ingest observer failed', { err: e });
        }
      },
    },
    log,
    ...(deps.maxOpenIngests !== undefined ? { maxOpenIngests: deps.maxOpenIngests } : {}),
  });
  const collectable = createCollectableContent({
    db: deps.db,
    blobs,
    log,
    forget: (ns, digest) => infos.forget(rowKey(ns, digest)),
  });
  return {
    name: 'content',
    collectable,
    grpc: [
      {
        definition: {
          ...ContentService,
          read: { ...ContentService.read, responseSerialize: encodeReadResponse },
          write: { ...ContentService.write, requestDeserialize: decodeWriteRequest },
        },
        implementation: createContentServer(store, log, { stallMs: deps.stallMs ?? 0 }),
      },
    ],
    plugins: [
      { type: 'io.containerd.content.v1', id: 'content', exports: { backend: blobs.kind } },
      { type: 'io.containerd.grpc.v1', id: 'content', requires: ['io.containerd.content.v1'] },
    ],
    namespaceUsage: {
      resourcesIn: async (_ctx, namespace) => ((await repo.hasBlobs(namespace)) ? ['blobs'] : []),
    },
    notReady: () => databaseNotReady(deps.db),
    flushEvents: relay.flush,
    observeIngests(o) {
      observer = o;
      return () => {
        if (observer === o) observer = undefined;
      };
    },
    read: (ctx, digest) =>
      store.read(
        ctx,
        parseDigest(digest, (problem) => `${digest}: ${problem}`),
        0,
        0,
      ),
    async close() {
      dialed?.close();
      await relay.close();
      await blobs.close();
      // Last: with the database unreachable, postgres.js waits for a connection to send UNLISTEN.
      await unlisten();
    },
  };
}
