import type { Queryable } from '@berth/common/db';
import { sweepRequestChannel } from '@berth/common/node-sweep';
import { enqueueMany } from '@berth/common/outbox';
import { allSnapshotReferences, deleteSnapshotRecords, notifyNode } from '../db/collectable-repo.js';
import type { SnapshotEvents } from '../events.js';

/**
 * What the garbage collector needs from snapshots: every node's records (a parent named by its key), and the
 * removal of the keys a collection left unmarked, inside the collector's transaction. Each node whose records
 * went is told on `sweepRequestChannel` when the transaction commits, and frees its directories (reconcile).
 */
export interface CollectableSnapshots {
  /** Every record, or with `since` (a change point, libs/common gc-lock) only those written since. */
  read(q: Queryable, since?: string): Promise<SnapshotReferences>;
  /** Deletes every node's records of these keys, publishes `/snapshot/remove`; returns the nodes touched. */
  remove(q: Queryable, plan: SnapshotRemoval): Promise<{ records: number; snapshots: number; nodes: string[] }>;
}

export interface SnapshotReferences {
  readonly snapshots: Array<{
    namespace: string;
    snapshotter: string;
    key: string;
    parent: string;
    labels: Record<string, string>;
  }>;
}

export interface SnapshotRemoval {
  readonly snapshots: ReadonlyArray<{ readonly namespace: string; readonly snapshotter: string; readonly key: string }>;
}

export function createCollectableSnapshots(deps: { readonly events: SnapshotEvents }): CollectableSnapshots {
  return {
    async read(q, since) {
      return { snapshots: await allSnapshotReferences(q, since) };
    },

    async remove(q, plan) {
      if (plan.snapshots.length === 0) return { records: 0, snapshots: 0, nodes: [] };
      // Every unmarked snapshot's children are unmarked too (a child references its parent): one delete
      // takes them all, and its foreign key check at the end of the statement finds no child left behind.
      const gone = await deleteSnapshotRecords(q, plan.snapshots);
      const nodes = [...new Set(gone.map((g) => g.node))].sort();
      await enqueueMany(
        q,
        'snapshots',
        gone.map((g) => ({ namespace: g.namespace, ...deps.events.removed(g.key) })),
      );
      for (const n of nodes) await notifyNode(q, sweepRequestChannel, n);
      return { records: gone.length, snapshots: gone.length, nodes };
    },
  };
}
