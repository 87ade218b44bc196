import type {
  CollectableServer,
  ReadCollectableResponse,
  RemoveCollectableRequest,
  RemoveCollectableResponse,
  SweepBackendResponse,
} from '@berth/proto/berth/internal/v1/collectable';
import { CollectableService } from '@berth/proto/berth/internal/v1/collectable';
import type { Db, Queryable } from './db.js';
import { fenceCollector } from './gc-lock.js';
import { handlers } from './grpc-handlers.js';
import type { GrpcRegistration } from './grpc-registration.js';
import type { Logger } from './log.js';

/**
 * `berth.internal.v1.Collectable` for an owner of resources (metadata, content, snapshots) whose collector
 * runs in another process. The owner's collectable part reads and removes its records inside a transaction;
 * this adapter runs the removal fenced (fenceCollector) and converts to and from the wire.
 */
export type Labels = Record<string, string>;

export interface CollectableRecords {
  leases: Array<{
    namespace: string;
    id: string;
    labels: Labels;
    resources: Array<{ kind: 'content' | 'ingests' | 'snapshots'; snapshotter: string; id: string }>;
  }>;
  images: Array<{ namespace: string; name: string; target: string; labels: Labels }>;
  containers: Array<{ namespace: string; id: string; snapshotter: string; snapshotKey: string; labels: Labels }>;
  blobs: Array<{ namespace: string; digest: string; labels: Labels }>;
  ingests: Array<{ namespace: string; ref: string; expected: string; expiresAt: Date | null }>;
  snapshots: Array<{ namespace: string; snapshotter: string; key: string; parent: string; labels: Labels }>;
}

export interface CollectableRemoval {
  leases: Array<{ namespace: string; id: string }>;
  images: Array<{ namespace: string; name: string }>;
  blobs: Array<{ namespace: string; digest: string }>;
  ingests: Array<{ namespace: string; ref: string }>;
  snapshots: Array<{ namespace: string; snapshotter: string; key: string }>;
}

export interface CollectableCounts {
  leases: number;
  images: number;
  blobs: number;
  ingests: number;
  snapshots: number;
  nodes: string[];
}

export interface BackendSweep {
  blobsDeleted: number;
  bytesFreed: number;
  ingestsDeleted: number;
  uploadsAborted: number;
  failures: number;
}

/** An owner's part: what it reads and removes (its own kinds only), and its backend sweep. */
export interface CollectablePart {
  /** Every record, or with `since` (a change point, gc-lock.ts) only those written since. */
  read(q: Queryable, since?: string): Promise<Partial<CollectableRecords>>;
  remove(q: Queryable, plan: CollectableRemoval): Promise<Partial<CollectableCounts>>;
  sweepBackend?(opts: { graceMs: number; deleteTimeoutMs: number }): Promise<Partial<BackendSweep>>;
}

const emptyRecords = (): CollectableRecords => ({
  leases: [],
  images: [],
  containers: [],
  blobs: [],
  ingests: [],
  snapshots: [],
});

export function recordsToPb(r: Partial<CollectableRecords>): ReadCollectableResponse {
  return {
    leases: (r.leases ?? []).map((l) => ({ ...l, resources: l.resources.map((x) => ({ ...x })) })),
    images: r.images ?? [],
    containers: r.containers ?? [],
    blobs: r.blobs ?? [],
    ingests: (r.ingests ?? []).map((i) => ({
      namespace: i.namespace,
      ref: i.ref,
      expected: i.expected,
      expiresAtUnixMs: i.expiresAt ? i.expiresAt.getTime() : 0,
    })),
    snapshots: r.snapshots ?? [],
  };
}

export function recordsFromPb(p: ReadCollectableResponse): CollectableRecords {
  return {
    ...emptyRecords(),
    leases: p.leases.map((l) => ({
      namespace: l.namespace,
      id: l.id,
      labels: l.labels,
      resources: l.resources.map((x) => ({
        kind: x.kind as 'content' | 'ingests' | 'snapshots',
        snapshotter: x.snapshotter,
        id: x.id,
      })),
    })),
    images: p.images,
    containers: p.containers,
    blobs: p.blobs,
    ingests: p.ingests.map((i) => ({
      namespace: i.namespace,
      ref: i.ref,
      expected: i.expected,
      expiresAt: i.expiresAtUnixMs === 0 ? null : new Date(i.expiresAtUnixMs),
    })),
    snapshots: p.snapshots,
  };
}

export function removalToPb(fencePid: number, r: CollectableRemoval): RemoveCollectableRequest {
  return {
    fencePid,
    leases: r.leases.map((l) => ({ namespace: l.namespace, key: l.id })),
    images: r.images.map((i) => ({ namespace: i.namespace, key: i.name })),
    blobs: r.blobs.map((b) => ({ namespace: b.namespace, key: b.digest })),
    ingests: r.ingests.map((i) => ({ namespace: i.namespace, key: i.ref })),
    snapshots: r.snapshots,
  };
}

function removalFromPb(p: RemoveCollectableRequest): CollectableRemoval {
  return {
    leases: p.leases.map((k) => ({ namespace: k.namespace, id: k.key })),
    images: p.images.map((k) => ({ namespace: k.namespace, name: k.key })),
    blobs: p.blobs.map((k) => ({ namespace: k.namespace, digest: k.key })),
    ingests: p.ingests.map((k) => ({ namespace: k.namespace, ref: k.key })),
    snapshots: p.snapshots,
  };
}

export function countsFromPb(p: RemoveCollectableResponse): CollectableCounts {
  return {
    leases: p.leases,
    images: p.images,
    blobs: p.blobs,
    ingests: p.ingests,
    snapshots: p.snapshots,
    nodes: p.nodes,
  };
}

export function sweepFromPb(p: SweepBackendResponse): BackendSweep {
  return {
    blobsDeleted: p.blobsDeleted,
    bytesFreed: p.bytesFreed,
    ingestsDeleted: p.ingestsDeleted,
    uploadsAborted: p.uploadsAborted,
    failures: p.failures,
  };
}

export function collectableRegistration(db: Db, part: CollectablePart, log: Logger): GrpcRegistration {
  const h = handlers(log);
  const implementation: CollectableServer = {
    read: h.unary(async (req) => recordsToPb(await part.read(db, req.changedSince || undefined))),
    remove: h.unary(async (req): Promise<RemoveCollectableResponse> => {
      const c = await db.transaction(async (tx) => {
        await fenceCollector(tx, req.fencePid);
        return part.remove(tx, removalFromPb(req));
      });
      return {
        leases: c.leases ?? 0,
        images: c.images ?? 0,
        blobs: c.blobs ?? 0,
        ingests: c.ingests ?? 0,
        snapshots: c.snapshots ?? 0,
        nodes: c.nodes ?? [],
      };
    }),
    sweepBackend: h.unary(async (req): Promise<SweepBackendResponse> => {
      const s =
        (await part.sweepBackend?.({
          graceMs: req.graceMs,
          deleteTimeoutMs: req.deleteTimeoutMs,
        })) ?? {};
      return {
        blobsDeleted: s.blobsDeleted ?? 0,
        bytesFreed: s.bytesFreed ?? 0,
        ingestsDeleted: s.ingestsDeleted ?? 0,
        uploadsAborted: s.uploadsAborted ?? 0,
        failures: s.failures ?? 0,
      };
    }),
  };
  return { definition: CollectableService, implementation };
}
