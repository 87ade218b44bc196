import { tricolor } from '../mark/tricolor.js';
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
  /**
   * The tricolor mark from the roots: every node reached, under its normalized identity. After `add`, it
   * continues the earlier mark from what was added; the answer is live (it reflects later marks).
   */
  mark(): MarkedNodes & { readonly size: number; names(): Set<string> };
  /**
   * Adds records read later (those written since the graph's were read): their nodes, edges and roots join
   * the graph, whose edges only grow. A record already in the graph keeps its old edges beside its new ones,
   * so a mark of the result keeps at least what the newest records reach.
   */
  add(r: Resources): void;
}

/**
 * Nodes interned to numbers through nested maps (type → namespace → snapshotter → key) of the strings the
 * records already hold: a node's string form is built only when asked for, so marking tens of thousands of
 * records hashes no freshly concatenated strings.
 */
class NodeIndex {
  private readonly scopes = new Map<string, Map<string, Map<string, Map<string, number>>>>();
  readonly types: NodeType[] = [];
  readonly namespaces: string[] = [];
  readonly snapshotters: string[] = [];
  readonly keys: string[] = [];
  readonly edges: number[][] = [];
  /** For a flat node, the id of the resource it is (its normalized identity); others are their own. */
  readonly normal: number[] = [];

  find(type: NodeType, ns: string, key: string, snapshotter = ''): number | undefined {
    return this.scopes.get(type)?.get(ns)?.get(snapshotter)?.get(key);
  }

  id(type: NodeType, ns: string, key: string, snapshotter = ''): number {
    let byNs = this.scopes.get(type);
    if (!byNs) this.scopes.set(type, (byNs = new Map()));
    let bySs = byNs.get(ns);
    if (!bySs) byNs.set(ns, (bySs = new Map()));
    let byKey = bySs.get(snapshotter);
    if (!byKey) bySs.set(snapshotter, (byKey = new Map()));
    let i = byKey.get(key);
    if (i === undefined) {
      i = this.keys.length;
      byKey.set(key, i);
      this.types.push(type);
      this.namespaces.push(ns);
      this.snapshotters.push(snapshotter);
      this.keys.push(key);
      this.edges.push([]);
      this.normal.push(i);
      if (type === NodeType.contentFlat) this.normal[i] = this.id(NodeType.content, ns, key);
      else if (type === NodeType.snapshotFlat) this.normal[i] = this.id(NodeType.snapshot, ns, key, snapshotter);
    }
    return i;
  }

  target(ns: string, t: RefTarget): number {
    return t.kind === 'snapshot' ? this.id(NodeType.snapshot, ns, t.name, t.snapshotter) : this.id(t.kind, ns, t.key);
  }

  name(i: number): string {
    const ss = this.snapshotters[i] as string;
    const key = this.keys[i] as string;
    return node(this.types[i] as NodeType, this.namespaces[i] as string, ss === '' ? key : `${ss}/${key}`);
  }

  /** The id of a node given in its string form, if it is in the graph. */
  parse(n: string): number | undefined {
    const { type, namespace, key } = parseNode(n);
    if (type !== NodeType.snapshot && type !== NodeType.snapshotFlat) return this.find(type, namespace, key);
    const slash = key.indexOf('/');
    return this.find(type, namespace, key.slice(slash + 1), key.slice(0, slash));
  }
}

/** The nodes a mark reached, asked by resource without building node strings. */
export interface MarkedNodes {
  has(type: NodeType, namespace: string, key: string, snapshotter?: string): boolean;
}

/**
 * Builds the graph of `r` as seen at `now` (expiry of leases, images and ingests). Every edge is resolved
 * once here, so the mark walks arrays of numbers.
 */
export function buildGraph(r: Resources, now: Date): GcGraph {
  const ix = new NodeIndex();
  const rootIds: number[] = [];
  const state = { seen: new Set<number>(), black: new Set<number>() };
  let marking = false;
  /** Since the last mark: new roots, and the targets of new edges (expanded now if their source was). */
  let pending: number[] = [];
  let pendingEdges: Array<[number, number]> = [];

  const edge = (from: number, to: number): void => {
    (ix.edges[from] as number[]).push(to);
    if (marking) pendingEdges.push([from, to]);
  };
  const root = (i: number): void => {
    rootIds.push(i);
    pending.push(i);
  };
  const add = (r: Resources): void => {
    const labelEdges = (from: number, ns: string, labels: Labels): void => {
      for (const t of labelRefs(labels)) edge(from, ix.target(ns, t));
    };
    for (const b of r.blobs) labelEdges(ix.id(NodeType.content, b.namespace, b.digest), b.namespace, b.labels);
    for (const s of r.snapshots) {
      const self = ix.id(NodeType.snapshot, s.namespace, s.key, s.snapshotter);
      const flat = ix.id(NodeType.snapshotFlat, s.namespace, s.key, s.snapshotter);
      if (s.parent !== '') {
        edge(self, ix.id(NodeType.snapshot, s.namespace, s.parent, s.snapshotter));
        edge(flat, ix.id(NodeType.snapshotFlat, s.namespace, s.parent, s.snapshotter));
      }
      labelEdges(self, s.namespace, s.labels);
    }
    for (const i of r.ingests) {
      const self = ix.id(NodeType.ingest, i.namespace, i.ref);
      if (i.expected !== '') edge(self, ix.id(NodeType.content, i.namespace, i.expected));
    }
    for (const i of r.images) {
      const self = ix.id(NodeType.image, i.namespace, i.name);
      edge(self, ix.id(NodeType.content, i.namespace, i.target));
      labelEdges(self, i.namespace, i.labels);
    }
    for (const c of r.containers) {
      const self = ix.id(NodeType.container, c.namespace, c.id);
      if (c.snapshotter !== '') edge(self, ix.id(NodeType.snapshot, c.namespace, c.snapshotKey, c.snapshotter));
      labelEdges(self, c.namespace, c.labels);
    }

    // Back references: the labelled object hangs below the object its label names (a flat node or an empty
    // key has none).
    const backRefs = (owner: number, ns: string, labels: Labels): void => {
      for (const t of labelBackRefs(labels))
        if (t.kind === 'snapshot' ? t.name !== '' : t.key !== '') edge(ix.target(ns, t), owner);
    };
    for (const b of r.blobs) backRefs(ix.id(NodeType.content, b.namespace, b.digest), b.namespace, b.labels);
    for (const s of r.snapshots)
      backRefs(ix.id(NodeType.snapshot, s.namespace, s.key, s.snapshotter), s.namespace, s.labels);
    for (const i of r.images) backRefs(ix.id(NodeType.image, i.namespace, i.name), i.namespace, i.labels);
    for (const c of r.containers) backRefs(ix.id(NodeType.container, c.namespace, c.id), c.namespace, c.labels);

    for (const l of r.leases) {
      if (expired(l.labels, now)) continue;
      root(ix.id(NodeType.lease, l.namespace, l.id));
      const flat = isFlat(l.labels);
      for (const res of l.resources) {
        if (res.kind === 'content') root(ix.id(flat ? NodeType.contentFlat : NodeType.content, l.namespace, res.id));
        else if (res.kind === 'snapshots')
          root(ix.id(flat ? NodeType.snapshotFlat : NodeType.snapshot, l.namespace, res.id, res.snapshotter));
        else root(ix.id(NodeType.ingest, l.namespace, res.id));
      }
    }
    for (const i of r.images) if (!expired(i.labels, now)) root(ix.id(NodeType.image, i.namespace, i.name));
    for (const i of r.ingests) {
      if (i.expiresAt !== null && i.expiresAt.getTime() > now.getTime())
        root(ix.id(NodeType.ingest, i.namespace, i.ref));
    }
    for (const b of r.blobs) if (isRoot(b.labels)) root(ix.id(NodeType.content, b.namespace, b.digest));
    for (const c of r.containers) root(ix.id(NodeType.container, c.namespace, c.id));
    for (const s of r.snapshots)
      if (isRoot(s.labels)) root(ix.id(NodeType.snapshot, s.namespace, s.key, s.snapshotter));
  };
  add(r);

  const marked = {
    has: (type: NodeType, ns: string, key: string, snapshotter = '') => {
      const i = ix.find(type, ns, key, snapshotter);
      return i !== undefined && state.black.has(i);
    },
    get size() {
      return state.black.size;
    },
    names: () => new Set([...state.black].map((i) => ix.name(i))),
  };

  return {
    get roots() {
      return rootIds.map((i) => ix.name(i));
    },
    refs(n) {
      const i = ix.parse(n);
      return i === undefined ? [] : (ix.edges[i] as number[]).map((t) => ix.name(t));
    },
    add,
    mark() {
      const grey = pending;
      for (const [from, to] of pendingEdges) if (state.seen.has(from)) grey.push(to);
      pending = [];
      pendingEdges = [];
      marking = true;
      tricolor(
        grey,
        (i) => ix.edges[i] as number[],
        (i) => ix.normal[i] as number,
        state,
      );
      return marked;
    },
  };
}

const noResources: Resources = { leases: [], images: [], containers: [], blobs: [], ingests: [], snapshots: [] };

/**
 * `buildGraph`, a slice of `slice` records at a time with the event loop let go between slices: the
 * collector's concurrent mark shares its process with writers (all-in-one), whose calls then wait for one
 * slice (a few milliseconds), not for the whole graph. The same graph: every record adds its own edges.
 */
export async function buildGraphPaced(r: Resources, now: Date, slice = 2_000): Promise<GcGraph> {
  const graph = buildGraph(noResources, now);
  for (const kind of Object.keys(noResources) as Array<keyof Resources>) {
    const records = r[kind] as readonly unknown[];
    for (let i = 0; i < records.length; i += slice) {
      graph.add({ ...noResources, [kind]: records.slice(i, i + slice) });
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  return graph;
}
