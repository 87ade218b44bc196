import type { Queryable } from '@berth/common/db';
import { enqueueMany } from '@berth/common/outbox';
import {
  allContainerSnapshots,
  allImageTargets,
  allLeaseResources,
  allLeases,
  deleteImages,
  deleteLeases,
} from '../db/collectable-repo.js';
import type { ImageEvents } from '../images/types.js';

/**
 * What the garbage collector needs from metadata: every namespace's leases (with what they hold), images and
 * containers, and the removal of the leases and expired images a collection left unmarked. The removal, and
 * a read of what changed since a change point, run inside the caller's transaction, which holds the
 * collection lock exclusively (libs/common gc-lock); a full read runs without it.
 */
export interface CollectableMetadata {
  /** Every record, or with `since` (a change point) only those written since. */
  read(q: Queryable, since?: string): Promise<MetadataReferences>;
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
    async read(q, since) {
      const leases = await allLeases(q, since);
      const resources = await allLeaseResources(q, since);
      const byLease = new Map<string, MetadataReferences['leases'][number]>();
      const out: MetadataReferences = {
        leases: [],
        images: await allImageTargets(q, since),
        containers: await allContainerSnapshots(q, since),
      };
      for (const l of leases) {
        const lease = { namespace: l.namespace, id: l.id, labels: l.labels, resources: [] };
        byLease.set(`${l.namespace}\u0000${l.id}`, lease);
        out.leases.push(lease);
      }
      for (const r of resources) {
        byLease
          .get(`${r.namespace}\u0000${r.lease}`)
          ?.resources.push({ kind: r.kind, snapshotter: r.snapshotter, id: r.id });
      }
      return out;
    },

    async remove(q, plan) {
      const leases = plan.leases.length > 0 ? await deleteLeases(q, plan.leases) : 0;
      let images = 0;
      if (plan.images.length > 0) {
        const gone = await deleteImages(q, plan.images);
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
