import type { Queryable } from '@berth/common/db';
import { type SnapshotRecord, snapshotRows } from '../db/snapshots-repo.js';
import type { Info } from './types.js';

/**
 * Every snapshot record of one snapshotter on this node, in memory. A node runs one snapshots service, the
 * only writer of its rows (DESIGN.md), so the index is complete once loaded and stays exact as long as each
 * committed write is applied here too: reads (Stat, Mounts, List, parent chains) then never query the
 * database, which costs more than the rest of those calls together. Writes still check and lock in their
 * transaction; the index is updated after the commit.
 */
export class NodeIndex {
  private readonly byKey = new Map<string, SnapshotRecord>();
  private readonly byId = new Map<number, SnapshotRecord>();
  private readonly children = new Map<number, number>();

  static async load(db: Queryable, node: string, snapshotter: string): Promise<NodeIndex> {
    const index = new NodeIndex();
    for (const r of await snapshotRows(db, node, snapshotter)) index.put(r);
    return index;
  }

  get(namespace: string, key: string): SnapshotRecord | undefined {
    return this.byKey.get(slot(namespace, key));
  }

  /** Ids of the chain from `id` down to its base layer, nearest first. */
  chain(id: number | null): number[] {
    const ids: number[] = [];
    for (
      let r = id === null ? undefined : this.byId.get(id);
      r;
      r = r.parentId === null ? undefined : this.byId.get(r.parentId)
    ) {
      ids.push(r.id);
    }
    return ids;
  }

  parentKey(r: SnapshotRecord): string {
    return r.parentId === null ? '' : (this.byId.get(r.parentId)?.key ?? '');
  }

  hasChildren(id: number): boolean {
    return (this.children.get(id) ?? 0) > 0;
  }

  ids(): Set<number> {
    return new Set(this.byId.keys());
  }

  /** The namespace's records, by key in byte order as containerd lists them. */
  list(namespace: string): SnapshotRecord[] {
    const out: SnapshotRecord[] = [];
    for (const r of this.byId.values()) if (r.namespace === namespace) out.push(r);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Adds a record or replaces the one with its id (its key may have changed, as on commit). */
  put(r: SnapshotRecord): void {
    const old = this.byId.get(r.id);
    if (old) this.drop(old);
    this.byId.set(r.id, r);
    this.byKey.set(slot(r.namespace, r.key), r);
    if (r.parentId !== null) this.children.set(r.parentId, (this.children.get(r.parentId) ?? 0) + 1);
  }

  remove(id: number): void {
    const r = this.byId.get(id);
    if (r) this.drop(r);
  }

  info(r: SnapshotRecord): Info {
    return {
      name: r.key,
      parent: this.parentKey(r),
      kind: r.kind,
      labels: { ...r.labels },
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
    };
  }

  private drop(r: SnapshotRecord): void {
    this.byId.delete(r.id);
    if (this.byKey.get(slot(r.namespace, r.key)) === r) this.byKey.delete(slot(r.namespace, r.key));
    if (r.parentId !== null) {
      const n = (this.children.get(r.parentId) ?? 1) - 1;
      if (n > 0) this.children.set(r.parentId, n);
      else this.children.delete(r.parentId);
    }
  }
}

const slot = (namespace: string, key: string): string => `${namespace}\0${key}`;
