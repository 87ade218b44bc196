import type { Queryable } from '@berth/common/db';
import { enqueueMany } from '@berth/common/outbox';
import { jsonColumn } from '../db/columns.js';
import type { ImageEvents } from '../images/types.js';

/**
 * What the garbage collector needs from metadata: every namespace's leases (with what they hold), images and
 * containers, and the removal of the leases and expired images a collection left unmarked. Both run inside
 * the caller's transaction, which holds the collection lock exclusively (libs/common gc-lock).
 */
export interface CollectableMetadata {
  read(q: Queryable): Promise<MetadataReferences>;
  /** Deletes the leases (their resources go with them) and images; returns how many rows went. */
  remove(q: Queryable, plan: MetadataRemoval): Promise<{ leases: number; images: number }>;
}

export interface MetadataReferences {
  readonly leases: Array<{
    namespace: string;
    id: string;
    labels: Record<string, string>;
    resources: Array<{ kind: 'content' | 'ingests' | 'snapshots'; snapshotter: string; id: string }>;
  }>;
  readonly images: Array<{ namespace: string; name: string; target: string; labels: Record<string, string> }>;
  readonly containers: Array<{
    namespace: string;
    id: string;
    snapshotter: string;
    snapshotKey: string;
    labels: Record<string, string>;
  }>;
}

export interface MetadataRemoval {
  readonly leases: ReadonlyArray<{ readonly namespace: string; readonly id: string }>;
  readonly images: ReadonlyArray<{ readonly namespace: string; readonly name: string }>;
}

export function createCollectableMetadata(deps: { readonly events: ImageEvents }): CollectableMetadata {
  return {
    async read(q) {
      const leases = await q.query<{ namespace: string; id: string; labels: Record<string, string> | string }>(
        'SELECT namespace, id, labels FROM metadata.leases ORDER BY namespace, id',
      );
      const resources = await q.query<{
        namespace: string;
        lease: string;
        kind: 'content' | 'ingests' | 'snapshots';
        snapshotter: string;
        id: string;
      }>('SELECT namespace, lease, kind, snapshotter, id FROM metadata.lease_resources');
      const byLease = new Map<string, MetadataReferences['leases'][number]>();
      const out: MetadataReferences = { leases: [], images: [], containers: [] };
      for (const l of leases) {
        const lease = { namespace: l.namespace, id: l.id, labels: jsonColumn(l.labels), resources: [] };
        byLease.set(`${l.namespace}\u0000${l.id}`, lease);
        out.leases.push(lease);
      }
      for (const r of resources) {
        byLease
          .get(`${r.namespace}\u0000${r.lease}`)
          ?.resources.push({ kind: r.kind, snapshotter: r.snapshotter, id: r.id });
      }
      for (const i of await q.query<{
        namespace: string;
        name: string;
        target_digest: string;
        labels: Record<string, string> | string;
      }>('SELECT namespace, name, target_digest, labels FROM metadata.images')) {
        out.images.push({
          namespace: i.namespace,
          name: i.name,
          target: i.target_digest,
          labels: jsonColumn(i.labels),
        });
      }
      for (const c of await q.query<{
        namespace: string;
        id: string;
        snapshotter: string;
        snapshot_key: string;
        labels: Record<string, string> | string;
      }>('SELECT namespace, id, snapshotter, snapshot_key, labels FROM metadata.containers')) {
        out.containers.push({
          namespace: c.namespace,
          id: c.id,
          snapshotter: c.snapshotter,
          snapshotKey: c.snapshot_key,
          labels: jsonColumn(c.labels),
        });
      }
      return out;
    },

    async remove(q, plan) {
      let leases = 0;
      if (plan.leases.length > 0) {
        const gone = await q.query(
          `DELETE FROM metadata.leases l USING unnest($1::text[], $2::text[]) AS d(namespace, id)
           WHERE l.namespace = d.namespace AND l.id = d.id RETURNING l.id`,
          [plan.leases.map((l) => l.namespace), plan.leases.map((l) => l.id)],
        );
        leases = gone.length;
      }
      let images = 0;
      if (plan.images.length > 0) {
        const gone = await q.query<{ namespace: string; name: string }>(
          `DELETE FROM metadata.images i USING unnest($1::text[], $2::text[]) AS d(namespace, name)
           WHERE i.namespace = d.namespace AND i.name = d.name RETURNING i.namespace, i.name`,
          [plan.images.map((i) => i.namespace), plan.images.map((i) => i.name)],
        );
        // containerd publishes /images/delete for images its collector removes (metadata/db.go).
        await enqueueMany(
          q,
          'metadata',
          gone.map((g) => ({ namespace: g.namespace, ...deps.events.deleted(g.name) })),
        );
        images = gone.length;
      }
      return { leases, images };
    },
  };
}
