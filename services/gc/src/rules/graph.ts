import { expired, isFlat, isRoot, labelBackRefs, labelRefs, type RefTarget } from './labels.js';
import type { Labels, Resources } from './resources.js';

/**
 * containerd's resource graph (`metadata/gc.go` scanRoots, references, scanAll) over the records the owners
 * returned. A node is a string `type \0 namespace \0 key`; snapshots are keyed `<snapshotter>/<key>`.
 */
export const NodeType = {
  content: 'content',
  snapshot: 'snapshot',
  container: 'container',
  lease: 'lease',
  ingest: 'ingest',
  image: 'image',
  /** Reached through a `gc.flat` lease: kept, but its label references are not followed. */
  contentFlat: 'content~flat',
  snapshotFlat: 'snapshot~flat',
} as const;
export type NodeType = (typeof NodeType)[keyof typeof NodeType];

const sep = '\u0000';

export function node(type: NodeType, namespace: string, key: string): string {
  return `${type}${sep}${namespace}${sep}${key}`;
}

export interface ParsedNode {
  readonly type: NodeType;
  readonly namespace: string;
  readonly key: string;
}

export function parseNode(n: string): ParsedNode {
  const a = n.indexOf(sep);
  const b = n.indexOf(sep, a + 1);
  return { type: n.slice(0, a) as NodeType, namespace: n.slice(a + 1, b), key: n.slice(b + 1) };
}

/** The identity a node is marked under: flat variants are the same resource. */
export function normalizeNode(n: string): string {
  if (n.startsWith(NodeType.contentFlat + sep)) return NodeType.content + n.slice(NodeType.contentFlat.length);
  if (n.startsWith(NodeType.snapshotFlat + sep)) return NodeType.snapshot + n.slice(NodeType.snapshotFlat.length);
  return n;
}

export interface GcGraph {
  /** Every root, in containerd's scan order per kind. */
  readonly roots: readonly string[];
  /** The nodes `n` references directly (its out-edges, back references included). */
  refs(n: string): string[];
}

const targetNode = (ns: string, t: RefTarget): string => node(t.kind, ns, t.key);

/** Builds the graph of `r` as seen at `now` (expiry of leases, images and ingests). */
export function buildGraph(r: Resources, now: Date): GcGraph {
  const blobs = new Map<string, Labels>();
  for (const b of r.blobs) blobs.set(node(NodeType.content, b.namespace, b.digest), b.labels);
  const snapshots = new Map<string, Array<{ parent: string; labels: Labels }>>();
  for (const s of r.snapshots) {
    const id = node(NodeType.snapshot, s.namespace, `${s.snapshotter}/${s.key}`);
    const list = snapshots.get(id) ?? [];
    list.push({ parent: s.parent === '' ? '' : `${s.snapshotter}/${s.parent}`, labels: s.labels });
    snapshots.set(id, list);
  }
  const ingests = new Map<string, string>();
  for (const i of r.ingests) ingests.set(node(NodeType.ingest, i.namespace, i.ref), i.expected);
  const images = new Map<string, { target: string; labels: Labels }>();
  for (const i of r.images) images.set(node(NodeType.image, i.namespace, i.name), i);
  const containers = new Map<string, { snapshotter: string; snapshotKey: string; labels: Labels }>();
  for (const c of r.containers) containers.set(node(NodeType.container, c.namespace, c.id), c);

  // Back references: the labelled object hangs below the object its label names.
  const backRefs = new Map<string, string[]>();
  const addBackRefs = (owner: string, ns: string, labels: Labels): void => {
    for (const t of labelBackRefs(labels)) {
      const from = targetNode(ns, t);
      const list = backRefs.get(from) ?? [];
      list.push(owner);
      backRefs.set(from, list);
    }
  };
  for (const b of r.blobs) addBackRefs(node(NodeType.content, b.namespace, b.digest), b.namespace, b.labels);
  for (const s of r.snapshots)
    addBackRefs(node(NodeType.snapshot, s.namespace, `${s.snapshotter}/${s.key}`), s.namespace, s.labels);
  for (const i of r.images) addBackRefs(node(NodeType.image, i.namespace, i.name), i.namespace, i.labels);
  for (const c of r.containers) addBackRefs(node(NodeType.container, c.namespace, c.id), c.namespace, c.labels);

  const roots: string[] = [];
  for (const l of r.leases) {
    if (expired(l.labels, now)) continue;
    roots.push(node(NodeType.lease, l.namespace, l.id));
    const flat = isFlat(l.labels);
    for (const res of l.resources) {
      if (res.kind === 'content') roots.push(node(flat ? NodeType.contentFlat : NodeType.content, l.namespace, res.id));
      else if (res.kind === 'snapshots')
        roots.push(node(flat ? NodeType.snapshotFlat : NodeType.snapshot, l.namespace, `${res.snapshotter}/${res.id}`));
      else roots.push(node(NodeType.ingest, l.namespace, res.id));
    }
  }
  for (const i of r.images) if (!expired(i.labels, now)) roots.push(node(NodeType.image, i.namespace, i.name));
  for (const i of r.ingests) {
    if (i.expiresAt !== null && i.expiresAt.getTime() > now.getTime())
      roots.push(node(NodeType.ingest, i.namespace, i.ref));
  }
  for (const b of r.blobs) if (isRoot(b.labels)) roots.push(node(NodeType.content, b.namespace, b.digest));
  for (const c of r.containers) roots.push(node(NodeType.container, c.namespace, c.id));
  for (const s of r.snapshots)
    if (isRoot(s.labels)) roots.push(node(NodeType.snapshot, s.namespace, `${s.snapshotter}/${s.key}`));

  const withLabels = (ns: string, labels: Labels, out: string[]): void => {
    for (const t of labelRefs(labels)) out.push(targetNode(ns, t));
  };

  return {
    roots,
    refs(n) {
      const { type, namespace: ns, key } = parseNode(n);
      const out: string[] = [];
      switch (type) {
        case NodeType.content: {
          const labels = blobs.get(n);
          if (labels) withLabels(ns, labels, out);
          break;
        }
        case NodeType.snapshot:
        case NodeType.snapshotFlat: {
          for (const s of snapshots.get(normalizeNode(n)) ?? []) {
            if (s.parent !== '') out.push(node(type, ns, s.parent));
            if (type === NodeType.snapshot) withLabels(ns, s.labels, out);
          }
          break;
        }
        case NodeType.ingest: {
          const expected = ingests.get(n);
          if (expected) out.push(node(NodeType.content, ns, expected));
          break;
        }
        case NodeType.image: {
          const i = images.get(n);
          if (i) {
            out.push(node(NodeType.content, ns, i.target));
            withLabels(ns, i.labels, out);
          }
          break;
        }
        case NodeType.container: {
          const c = containers.get(n);
          if (c) {
            if (c.snapshotter !== '') out.push(node(NodeType.snapshot, ns, `${c.snapshotter}/${c.snapshotKey}`));
            withLabels(ns, c.labels, out);
          }
          break;
        }
        default:
          break;
      }
      if (type !== NodeType.contentFlat && type !== NodeType.snapshotFlat && key !== '') {
        for (const b of backRefs.get(n) ?? []) out.push(b);
      }
      return out;
    },
  };
}
