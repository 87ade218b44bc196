import type { Queryable } from '@berth/common/db';
import type { Kind } from '../snapshots/types.js';

/** All SQL of the snapshots service's records (the collector's is in collectable-repo.ts); see schema.md. */

/** One snapshot record of this node, as the index holds it. */
export interface SnapshotRecord {
  readonly id: number;
  readonly namespace: string;
  readonly key: string;
  readonly kind: Kind;
  readonly parentId: number | null;
  readonly labels: Readonly<Record<string, string>>;
  readonly size: number;
  readonly inodes: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

interface Row {
  id: number | string;
  namespace: string;
  key: string;
  kind: Kind;
  parent_id: number | string | null;
  labels: Record<string, string> | string;
  size: number | string;
  inodes: number | string;
  created_at: Date | string;
  updated_at: Date | string;
}

const toDate = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));

function recordOf(r: Row): SnapshotRecord {
  return {
    id: Number(r.id),
    namespace: r.namespace,
    key: r.key,
    kind: r.kind,
    parentId: r.parent_id === null ? null : Number(r.parent_id),
    labels: typeof r.labels === 'string' ? (JSON.parse(r.labels) as Record<string, string>) : r.labels,
    size: Number(r.size),
    inodes: Number(r.inodes),
    createdAt: toDate(r.created_at),
    updatedAt: toDate(r.updated_at),
  };
}

const recordColumns = 'id, namespace, key, kind, parent_id, labels, size, inodes, created_at, updated_at';

type RecordRow = Row & Record<string, unknown>;

/** Every record of one snapshotter on one node (the node index loads them at start). */
export async function snapshotRows(db: Queryable, node: string, snapshotter: string): Promise<SnapshotRecord[]> {
  const rows = await db.query<RecordRow>(
    `SELECT ${recordColumns} FROM snapshots.snapshots WHERE node = $1 AND snapshotter = $2`,
    [node, snapshotter],
  );
  return rows.map(recordOf);
}

/** Records this node (`node`, under `name` in messages) in the table of nodes sharing the database. */
export async function registerNode(db: Queryable, node: string, name: string): Promise<void> {
  await db.query(
    `INSERT INTO snapshots.nodes (node, name) VALUES ($1, $2)
     ON CONFLICT (node) DO UPDATE SET name = EXCLUDED.name, seen_at = now()`,
    [node, name],
  );
}

/** The snapshotters holding snapshots of `namespace` on any node. */
export async function snapshottersUsing(db: Queryable, namespace: string): Promise<string[]> {
  const rows = await db.query<{ snapshotter: string }>(
    'SELECT DISTINCT snapshotter FROM snapshots.snapshots WHERE namespace = $1 ORDER BY snapshotter',
    [namespace],
  );
  return rows.map((r) => r.snapshotter);
}

/** The records of one snapshotter on one node: what a Snapshotter reads and writes. */
export class SnapshotsRepo {
  constructor(
    readonly db: Queryable,
    private readonly node: string,
    private readonly snapshotter: string,
  ) {}

  private scope(ns: string): unknown[] {
    return [this.node, this.snapshotter, ns];
  }

  /** Names (or ids) of the other nodes holding `key`, sorted. */
  async holders(ns: string, key: string): Promise<string[]> {
    const rows = await this.db.query<{ name: string }>(
      `SELECT DISTINCT coalesce(n.name, s.node) AS name
         FROM snapshots.snapshots s LEFT JOIN snapshots.nodes n ON n.node = s.node
        WHERE s.snapshotter = $1 AND s.namespace = $2 AND s.key = $3 AND s.node <> $4 ORDER BY name`,
      [this.snapshotter, ns, key, this.node],
    );
    return rows.map((h) => h.name);
  }

  /** The row as the transaction sees it, locked FOR UPDATE. */
  async lock(tx: Queryable, ns: string, key: string): Promise<SnapshotRecord | undefined> {
    const rows = await tx.query<RecordRow>(
      `SELECT ${recordColumns} FROM snapshots.snapshots
       WHERE node = $1 AND snapshotter = $2 AND namespace = $3 AND key = $4 FOR UPDATE`,
      [...this.scope(ns), key],
    );
    return rows[0] ? recordOf(rows[0]) : undefined;
  }

  async insert(
    tx: Queryable,
    ns: string,
    key: string,
    kind: Kind,
    parentId: number | null,
    labels: Readonly<Record<string, string>>,
  ): Promise<SnapshotRecord> {
    const [row] = await tx.query<RecordRow>(
      `INSERT INTO snapshots.snapshots (node, snapshotter, namespace, key, kind, parent_id, labels)
       VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb) RETURNING ${recordColumns}`,
      [...this.scope(ns), key, kind, parentId, JSON.stringify(labels)],
    );
    if (!row) throw new Error('insert returned no id');
    return recordOf(row);
  }

  /** Turns an active snapshot into the committed `name`; undefined when the row is gone. */
  async commit(
    tx: Queryable,
    id: number,
    name: string,
    labels: Readonly<Record<string, string>>,
    usage: { readonly size: number; readonly inodes: number },
  ): Promise<SnapshotRecord | undefined> {
    const [row] = await tx.query<RecordRow>(
      `UPDATE snapshots.snapshots SET key = $2, kind = 'committed', labels = $3::text::jsonb, size = $4, inodes = $5,
         created_at = now(), updated_at = now() WHERE id = $1 RETURNING ${recordColumns}`,
      [id, name, JSON.stringify(labels), usage.size, usage.inodes],
    );
    return row ? recordOf(row) : undefined;
  }

  async setLabels(
    tx: Queryable,
    id: number,
    labels: Readonly<Record<string, string>>,
  ): Promise<SnapshotRecord | undefined> {
    const [row] = await tx.query<RecordRow>(
      `UPDATE snapshots.snapshots SET labels = $2::text::jsonb, updated_at = now() WHERE id = $1
       RETURNING ${recordColumns}`,
      [id, JSON.stringify(labels)],
    );
    return row ? recordOf(row) : undefined;
  }

  /** Whether the row was there to delete. A child's foreign key refuses the delete of its parent. */
  async delete(tx: Queryable, id: number): Promise<boolean> {
    const gone = await tx.query('DELETE FROM snapshots.snapshots WHERE id = $1 RETURNING id', [id]);
    return gone.length > 0;
  }

  async exists(ns: string, key: string): Promise<boolean> {
    const rows = await this.db.query(
      'SELECT 1 FROM snapshots.snapshots WHERE node = $1 AND snapshotter = $2 AND namespace = $3 AND key = $4',
      [...this.scope(ns), key],
    );
    return rows.length > 0;
  }

  /** Ids of every record of this snapshotter on this node. */
  async ids(): Promise<Set<number>> {
    const rows = await this.db.query<{ id: number | string }>(
      'SELECT id FROM snapshots.snapshots WHERE node = $1 AND snapshotter = $2',
      [this.node, this.snapshotter],
    );
    return new Set(rows.map((r) => Number(r.id)));
  }
}
