import type { Queryable } from '@berth/common/db';
import { enqueueMany } from '@berth/common/outbox';
import type { SnapshotEvents } from '../events.js';

/** Sent when a collection removed records of a node; the payload is the node, which then reconciles. */
export const removedChannel = 'berth_snapshots_removed';

/**
 * What the garbage collector needs from snapshots: every node's records (a parent named by its key), and the
 * removal of the keys a collection left unmarked, inside the collector's transaction. Each node whose records
 * went is told on `removedChannel` when the transaction commits, and frees its directories (reconcile).
 */
export interface CollectableSnapshots {
  read(q: Queryable): Promise<SnapshotReferences>;
  /** Deletes every node's records of these keys, publishes `/snapshot/remove`; returns the nodes touched. */
  remove(q: Queryable, plan: SnapshotRemoval): Promise<{ records: number; snapshots: number; nodes: string[] }>;
  /** For a collector in another process: this node frees its directories when it is one of `nodes`. */
  sweepBackend(opts: { nodes: string[] }): Promise<{ nodesSwept: string[] }>;
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

export function createCollectableSnapshots(deps: {
  readonly events: SnapshotEvents;
  readonly node: string;
  readonly reconcile: () => Promise<number>;
}): CollectableSnapshots {
  return {
    async sweepBackend({ nodes }) {
      if (!nodes.includes(deps.node)) return { nodesSwept: [] };
      await deps.reconcile();
      return { nodesSwept: [deps.node] };
    },
    async read(q) {
      const rows = await q.query<{
        namespace: string;
        snapshotter: string;
        key: string;
        parent: string;
        labels: Record<string, string> | string;
      }>(
        `SELECT s.namespace, s.snapshotter, s.key, coalesce(p.key, '') AS parent, s.labels
         FROM snapshots.snapshots s LEFT JOIN snapshots.snapshots p ON p.id = s.parent_id`,
      );
      return {
        snapshots: rows.map((r) => ({
          namespace: r.namespace,
          snapshotter: r.snapshotter,
          key: r.key,
          parent: r.parent,
          labels: typeof r.labels === 'string' ? (JSON.parse(r.labels) as Record<string, string>) : r.labels,
        })),
      };
    },

    async remove(q, plan) {
      if (plan.snapshots.length === 0) return { records: 0, snapshots: 0, nodes: [] };
      // One statement: the foreign key from child to parent is checked at its end, and every unmarked
      // snapshot's children are unmarked too (a child references its parent), so they all go together.
      const gone = await q.query<{ node: string; namespace: string; key: string }>(
        `DELETE FROM snapshots.snapshots s
         USING unnest($1::text[], $2::text[], $3::text[]) AS d(namespace, snapshotter, key)
         WHERE s.namespace = d.namespace AND s.snapshotter = d.snapshotter AND s.key = d.key
         RETURNING s.node, s.namespace, s.key`,
        [
          plan.snapshots.map((s) => s.namespace),
          plan.snapshots.map((s) => s.snapshotter),
          plan.snapshots.map((s) => s.key),
        ],
      );
      const nodes = [...new Set(gone.map((g) => g.node))].sort();
      await enqueueMany(
        q,
        'snapshots',
        gone.map((g) => ({ namespace: g.namespace, ...deps.events.removed(g.key) })),
      );
      for (const n of nodes) await q.query('SELECT pg_notify($1, $2)', [removedChannel, n]);
      return { records: gone.length, snapshots: gone.length, nodes };
    },
  };
}
