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

export const planSize = (p: SweepPlan): number =>
  p.leases.length + p.images.length + p.blobs.length + p.ingests.length + p.snapshots.length;

export const emptyPlan = (p: SweepPlan): boolean => planSize(p) === 0;

type Removal =
  | { readonly kind: 'lease'; readonly namespace: string; readonly id: string }
  | { readonly kind: 'image'; readonly namespace: string; readonly name: string }
  | { readonly kind: 'ingest'; readonly namespace: string; readonly ref: string }
  | { readonly kind: 'blob'; readonly namespace: string; readonly digest: string }
  | { readonly kind: 'snapshot'; readonly namespace: string; readonly snapshotter: string; readonly key: string };

/**
 * A sweep plan taken in batches, one per hold of the lock: leases, images, ingests and blobs first, then
 * snapshots deepest first. A parent is unmarked only when all its children are (a child references its
 * parent), and a child is deeper, so no batch removes a parent whose child a later batch still holds.
 * Each batch skips what a continued mark reached since the plan was made, and the parents of snapshots
 * written meanwhile (their children are not in the plan; the next collection judges them).
 */
export class RemovalQueue {
  private readonly items: Removal[];
  private at = 0;

  constructor(plan: SweepPlan, r: Resources) {
    this.items = [
      ...plan.leases.map((l) => ({ kind: 'lease' as const, ...l })),
      ...plan.images.map((i) => ({ kind: 'image' as const, ...i })),
      ...plan.ingests.map((i) => ({ kind: 'ingest' as const, ...i })),
      ...plan.blobs.map((b) => ({ kind: 'blob' as const, ...b })),
      ...deepestFirst(plan.snapshots, r).map((s) => ({ kind: 'snapshot' as const, ...s })),
    ];
  }

  /** How many removals are still queued. */
  get size(): number {
    return this.items.length - this.at;
  }

  /** The next batch of at most `limit` removals `marked` still leaves white. */
  next(limit: number, marked: MarkedNodes, parentsOfNew: ReadonlySet<string>): SweepPlan {
    const batch: { [K in keyof SweepPlan]: Array<SweepPlan[K][number]> } = {
      leases: [],
      images: [],
      ingests: [],
      blobs: [],
      snapshots: [],
    };
    let n = 0;
    while (n < limit && this.at < this.items.length) {
      const x = this.items[this.at++] as Removal;
      switch (x.kind) {
        case 'lease':
          if (marked.has(NodeType.lease, x.namespace, x.id)) continue;
          batch.leases.push({ namespace: x.namespace, id: x.id });
          break;
        case 'image':
          if (marked.has(NodeType.image, x.namespace, x.name)) continue;
          batch.images.push({ namespace: x.namespace, name: x.name });
          break;
        case 'ingest':
          if (marked.has(NodeType.ingest, x.namespace, x.ref)) continue;
          batch.ingests.push({ namespace: x.namespace, ref: x.ref });
          break;
        case 'blob':
          if (marked.has(NodeType.content, x.namespace, x.digest)) continue;
          batch.blobs.push({ namespace: x.namespace, digest: x.digest });
          break;
        case 'snapshot':
          if (marked.has(NodeType.snapshot, x.namespace, x.key, x.snapshotter)) continue;
          if (parentsOfNew.has(snapshotId(x.namespace, x.snapshotter, x.key))) continue;
          batch.snapshots.push({ namespace: x.namespace, snapshotter: x.snapshotter, key: x.key });
          break;
      }
      n++;
    }
    return batch;
  }
}

/** A snapshot's identity across nodes, as `RemovalQueue.next`'s `parentsOfNew` names parents. */
export const snapshotId = (namespace: string, snapshotter: string, key: string): string =>
  `${namespace}\u0000${snapshotter}\u0000${key}`;

function deepestFirst(
  snapshots: SweepPlan['snapshots'],
  r: Resources,
): Array<{ namespace: string; snapshotter: string; key: string }> {
  const parent = new Map<string, string>();
  for (const s of r.snapshots) if (s.parent !== '') parent.set(snapshotId(s.namespace, s.snapshotter, s.key), s.parent);
  const depths = new Map<string, number>();
  const depth = (ns: string, ss: string, key: string): number => {
    const chain: string[] = [];
    let k: string | undefined = key;
    let d = 0;
    // Iterative: chains can be long, and a cycle (which no writer can make) must not loop forever.
    while (k !== undefined && chain.length <= r.snapshots.length) {
      const known = depths.get(snapshotId(ns, ss, k));
      if (known !== undefined) {
        d = known;
        break;
      }
      chain.push(k);
      k = parent.get(snapshotId(ns, ss, k));
    }
    for (let i = chain.length - 1; i >= 0; i--) depths.set(snapshotId(ns, ss, chain[i] as string), ++d);
    return depths.get(snapshotId(ns, ss, key)) ?? 0;
  };
  return [...snapshots]
    .map((s) => ({ s, d: depth(s.namespace, s.snapshotter, s.key) }))
    .sort((a, b) => b.d - a.d)
    .map((x) => x.s);
}
