import { join } from 'node:path';
import { backgroundContext } from '@berth/common/context';
import type { Db } from '@berth/common/db';
import { databaseNotReady, migrate } from '@berth/common/db';
import type { EventPublisher } from '@berth/common/event-bus';
import type { Logger } from '@berth/common/log';
import type { NamespaceUsage } from '@berth/common/namespace-usage';
import { ackSweep, parseSweepRequest, sweepRequestChannel } from '@berth/common/node-sweep';
import { startOutboxRelay } from '@berth/common/outbox';
import type { ServiceModule } from '@berth/common/service';
import { type MetadataClient, remoteMetadata } from '@berth/metadata/client';
import { SnapshotsService } from '@berth/proto/containerd/services/snapshots/v1/snapshots';
import { type CollectableSnapshots, createCollectableSnapshots } from './collectable/store.js';
import { migrations } from './db/migrations.js';
import { registerNode, snapshottersUsing } from './db/snapshots-repo.js';
import { snapshotEvents } from './events.js';
import { createSnapshotsServer } from './grpc/snapshots-server.js';
import {
  type Driver,
  nativeDriver,
  overlayDriver,
  overlaySupportsIndex,
  prepareDriverDir,
} from './snapshots/driver.js';
import { observedSnapshotter, type SnapshotCallObserver } from './snapshots/observed.js';
import { createSnapshotter } from './snapshots/store.js';
import type { Snapshotter } from './snapshots/types.js';

export type { CollectableSnapshots, SnapshotReferences, SnapshotRemoval } from './collectable/store.js';
/** The snapshots schema's migrations, for `berthd migrate` (the module also applies them when it starts). */
export { migrations } from './db/migrations.js';
export type { SnapshotCallObserver } from './snapshots/observed.js';
export type { Info, Kind, Mount, Snapshotter, Usage } from './snapshots/types.js';

export interface SnapshotsDeps {
  readonly db: Db;
  readonly bus: EventPublisher;
  readonly log: Logger;
  /** Where snapshot directories go: `<root>/<snapshotter>/<id>/`. */
  readonly root: string;
  /** This node's identity; rows of other nodes sharing the database are not this node's snapshots. */
  readonly node: string;
  /** This node's name (`--node`), recorded beside its identity so other nodes can say where a snapshot is. */
  readonly nodeName?: string;
  /** Metadata's address (Namespaces, Leases); unset runs without namespace registration and leases. */
  readonly metadataAddress?: string;
  /** Metadata in this process (all-in-one), used instead of dialing `metadataAddress`; the caller closes it. */
  readonly metadata?: MetadataClient;
  /** How long a streaming call waits for a client that stopped reading (`stall-timeout-ms`); unset: the default. */
  readonly stallMs?: number;
}

export interface SnapshotsModule extends ServiceModule {
  readonly namespaceUsage: NamespaceUsage;
  /** The snapshotters by name, for callers in the same process (tests, benchmarks). */
  readonly snapshotters: ReadonlyMap<string, Snapshotter>;
  /** What the garbage collector reads and removes (every node's records, in process). */
  readonly collectable: CollectableSnapshots;
  /** Frees this node's directories of records a collection removed; what the collector waits for. */
  reconcile(): Promise<number>;
  /** Resolves once every committed event has reached the bus. */
  flushEvents(): Promise<void>;
  /** Tells `observer` of every call the gRPC service serves from now on, until the function returned is called. */
  observeCalls(observer: SnapshotCallObserver): () => void;
}

/** Builds the snapshots service: `overlayfs` (default) and `native` snapshotters over one Postgres schema. */
export async function createSnapshotsModule(deps: SnapshotsDeps): Promise<SnapshotsModule> {
  const log = deps.log.child({ service: 'snapshots' });
  await migrate(deps.db, 'snapshots', migrations);
  const nodeName = deps.nodeName ?? deps.node;
  await registerNode(deps.db, deps.node, nodeName);
  const relay = startOutboxRelay({ db: deps.db, schema: 'snapshots', bus: deps.bus, log });
  const dialed = deps.metadata || !deps.metadataAddress ? undefined : remoteMetadata(deps.metadataAddress, log);
  const metadata = deps.metadata ?? dialed;
  const drivers: Driver[] = [
    overlayDriver(join(deps.root), { indexOff: await overlaySupportsIndex() }),
    nativeDriver(join(deps.root)),
  ];
  const snapshotters = new Map<string, Snapshotter>();
  for (const driver of drivers) {
    await prepareDriverDir(driver.dir);
    snapshotters.set(
      driver.name,
      await createSnapshotter({
        db: deps.db,
        node: deps.node,
        nodeName,
        driver,
        events: snapshotEvents,
        metadata,
        onCommit: relay.kick,
      }),
    );
  }
  // One reconciliation at a time, and one more queued at most (later asks join it): a collection's
  // notification and its collector's direct call (all-in-one) must not interleave their directory removals.
  let reconciling: Promise<number> = Promise.resolve(0);
  let queued: Promise<number> | undefined;
  const reconcile = (): Promise<number> => {
    if (queued) return queued;
    const ctx = backgroundContext(log);
    const next = reconciling.then(async () => {
      queued = undefined;
      let n = 0;
      for (const s of snapshotters.values()) n += await s.reconcile(ctx);
      return n;
    });
    queued = next;
    reconciling = next.catch((e: unknown) => {
      log.warn('reconciling snapshot directories failed', { err: e });
      return 0;
    });
    return next;
  };
  // A node that was down missed the notifications: it converges at start, and again whenever its
  // subscription is re-established (notifications sent while it was down are lost).
  await reconcile();
  let listening = false;
  const unlisten = await deps.db.listen(
    sweepRequestChannel,
    (payload) => {
      const req = parseSweepRequest(payload);
      if (req.node !== deps.node) return;
      void (async () => {
        await ackSweep(deps.db, 'started', req);
        const ok = await reconcile().then(
          () => true,
          () => false, // logged by the chain above
        );
        await ackSweep(deps.db, ok ? 'done' : 'failed', req);
      })().catch((e: unknown) => log.warn('answering a sweep request failed', { err: e }));
    },
    () => {
      if (listening) void reconcile().catch(() => undefined);
      listening = true;
    },
  );
  const namespaceUsage: NamespaceUsage = {
    async resourcesIn(_ctx, namespace) {
      // Any node's snapshots keep a namespace alive, not only this node's.
      const names = await snapshottersUsing(deps.db, namespace);
      return names.map((n) => `snapshots on ${JSON.stringify(n)} snapshotter`);
    },
  };
  const observers = new Set<SnapshotCallObserver>();
  const served = new Map([...snapshotters].map(([n, sn]) => [n, observedSnapshotter(sn, observers)]));
  return {
    name: 'snapshots',
    grpc: [
      {
        definition: SnapshotsService,
        implementation: createSnapshotsServer(served, log, { stallMs: deps.stallMs ?? 0 }),
      },
    ],
    plugins: [
      ...drivers.map((d) => ({
        type: 'io.containerd.snapshotter.v1',
        id: d.name,
        exports: { root: d.dir },
      })),
      { type: 'io.containerd.grpc.v1', id: 'snapshots', requires: ['io.containerd.snapshotter.v1'] },
    ],
    namespaceUsage,
    snapshotters,
    collectable: createCollectableSnapshots({ events: snapshotEvents }),
    reconcile,
    notReady: () => databaseNotReady(deps.db),
    flushEvents: relay.flush,
    observeCalls(observer) {
      observers.add(observer);
      return () => observers.delete(observer);
    },
    async close() {
      await unlisten();
      await reconciling;
      await Promise.all([...snapshotters.values()].map((s) => s.idle()));
      await relay.close();
      dialed?.close();
    },
  };
}
