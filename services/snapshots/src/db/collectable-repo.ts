import { type Queryable, readPages } from '@berth/common/db';
import { changeParam, writtenSince } from '@berth/common/gc-lock';

/** The SQL of the garbage collector's read and removal in snapshots (collectable/store.ts); see schema.md. */

export interface SnapshotReferenceRow {
  readonly namespace: string;
  readonly snapshotter: string;
  readonly key: string;
  /** The parent's key, '' for none. */
  readonly parent: string;
  readonly labels: Record<string, string>;
}

/** Every node's records (or those written since the change point `point`), a parent named by its key. */
export async function allSnapshotReferences(q: Queryable, point?: string): Promise<SnapshotReferenceRow[]> {
  type Row = {
    id: string;
    namespace: string;
    snapshotter: string;
    key: string;
    parent: string;
    labels: Record<string, string> | string;
  };
  const select = `SELECT s.id::text AS id, s.namespace, s.snapshotter, s.key, coalesce(p.key, '') AS parent, s.labels
     FROM snapshots.snapshots s LEFT JOIN snapshots.snapshots p ON p.id = s.parent_id`;
  const rows =
    point === undefined
      ? await readPages<Row>((after, limit) =>
          q.query<Row>(`${select} WHERE s.id > $1::bigint ORDER BY s.id LIMIT $2`, [after?.id ?? '-1', limit]),
        )
      : await q.query<Row>(`${select} WHERE ${writtenSince('s', 1)}`, [changeParam(point)]);
  return rows.map((r) => ({
    namespace: r.namespace,
    snapshotter: r.snapshotter,
    key: r.key,
    parent: r.parent,
    labels: typeof r.labels === 'string' ? (JSON.parse(r.labels) as Record<string, string>) : r.labels,
  }));
}

/**
 * Deletes every node's records of these keys; returns the records that went. One statement: the foreign key
 * from child to parent is checked at its end, so a parent goes with its children when they are all named.
 */
export function deleteSnapshotRecords(
  q: Queryable,
  snapshots: ReadonlyArray<{ readonly namespace: string; readonly snapshotter: string; readonly key: string }>,
): Promise<Array<{ node: string; namespace: string; key: string }>> {
  return q.query<{ node: string; namespace: string; key: string }>(
    `DELETE FROM snapshots.snapshots s
     USING unnest($1::text[], $2::text[], $3::text[]) AS d(namespace, snapshotter, key)
     WHERE s.namespace = d.namespace AND s.snapshotter = d.snapshotter AND s.key = d.key
     RETURNING s.node, s.namespace, s.key`,
    [snapshots.map((s) => s.namespace), snapshots.map((s) => s.snapshotter), snapshots.map((s) => s.key)],
  );
}

/** Sends `node` on `channel` when the transaction commits. */
export async function notifyNode(q: Queryable, channel: string, node: string): Promise<void> {
  await q.query('SELECT pg_notify($1, $2)', [channel, node]);
}
