import { type MarkedNodes, NodeType, node } from './graph.js';
import type { Resources } from './resources.js';

/** What a collection removes: every record containerd's scanAll visits that the mark left white. */
export interface SweepPlan {
  readonly leases: ReadonlyArray<{ readonly namespace: string; readonly id: string }>;
  /** Only expired images can be unmarked (an unexpired image is a root). */
  readonly images: ReadonlyArray<{ readonly namespace: string; readonly name: string }>;
  readonly blobs: ReadonlyArray<{ readonly namespace: string; readonly digest: string }>;
  readonly ingests: ReadonlyArray<{ readonly namespace: string; readonly ref: string }>;
  readonly snapshots: ReadonlyArray<{ readonly namespace: string; readonly snapshotter: string; readonly key: string }>;
}

/** What the mark left white. `marked` is the mark's own answer, or a set of node strings (tests). */
export function planSweep(r: Resources, marked: MarkedNodes | ReadonlySet<string>): SweepPlan {
  const has: MarkedNodes['has'] =
    marked instanceof Set
      ? (type, ns, key, ss) => marked.has(node(type, ns, ss ? `${ss}/${key}` : key))
      : (marked as MarkedNodes).has;
  const seen = new Set<string>();
  const snapshots: Array<{ namespace: string; snapshotter: string; key: string }> = [];
  for (const s of r.snapshots) {
    if (has(NodeType.snapshot, s.namespace, s.key, s.snapshotter)) continue;
    const n = node(NodeType.snapshot, s.namespace, `${s.snapshotter}/${s.key}`);
    if (seen.has(n)) continue;
    seen.add(n);
    snapshots.push({ namespace: s.namespace, snapshotter: s.snapshotter, key: s.key });
  }
  return {
    leases: r.leases
      .filter((l) => !has(NodeType.lease, l.namespace, l.id))
      .map((l) => ({ namespace: l.namespace, id: l.id })),
    images: r.images
      .filter((i) => !has(NodeType.image, i.namespace, i.name))
      .map((i) => ({ namespace: i.namespace, name: i.name })),
    blobs: r.blobs
      .filter((b) => !has(NodeType.content, b.namespace, b.digest))
      .map((b) => ({ namespace: b.namespace, digest: b.digest })),
    ingests: r.ingests
      .filter((i) => !has(NodeType.ingest, i.namespace, i.ref))
      .map((i) => ({ namespace: i.namespace, ref: i.ref })),
    snapshots,
  };
}

export const emptyPlan = (p: SweepPlan): boolean =>
  p.leases.length + p.images.length + p.blobs.length + p.ingests.length + p.snapshots.length === 0;
