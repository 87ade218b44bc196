import { type Queryable, readPages } from '@berth/common/db';
import { changedRows, changeParam, writtenSince } from '@berth/common/gc-lock';
import type { ParsedResource } from '../leases/resource.js';
import { jsonColumn } from './columns.js';

/**
 * The SQL of the garbage collector's reads and removals in metadata (collectable/store.ts); see schema.md.
 * Each read takes an optional change point: then it returns only the records written since (gc-lock.ts).
 */

type Labels = Record<string, string>;

export interface LeaseRecord {
  readonly namespace: string;
  readonly id: string;
  readonly labels: Labels;
}

export interface LeaseResourceRecord extends ParsedResource {
  readonly namespace: string;
  readonly lease: string;
}

export interface ImageTargetRecord {
  readonly namespace: string;
  readonly name: string;
  readonly target: string;
  readonly labels: Labels;
}

export interface ContainerSnapshotRecord {
  readonly namespace: string;
  readonly id: string;
  readonly snapshotter: string;
  readonly snapshotKey: string;
  readonly labels: Labels;
}

/** The leases written since `since`, or whose resources were: the keys `leaseKeys` joins on. */
const changedLeases = `
  SELECT namespace, id FROM metadata.leases l WHERE ${writtenSince('l', 1)}
  UNION SELECT namespace, lease FROM metadata.lease_resources r WHERE ${writtenSince('r', 1)}`;

/** Every lease of every namespace (or those changed since `since`), by namespace and id. */
export async function allLeases(q: Queryable, since?: string): Promise<LeaseRecord[]> {
  const rows = await q.query<{ namespace: string; id: string; labels: Labels | string }>(
    since === undefined
      ? 'SELECT namespace, id, labels FROM metadata.leases ORDER BY namespace, id'
      : `WITH changed AS (${changedLeases})
         SELECT l.namespace, l.id, l.labels FROM metadata.leases l JOIN changed c USING (namespace, id)
         ORDER BY l.namespace, l.id`,
    since === undefined ? [] : [changeParam(since)],
  );
  return rows.map((l) => ({ namespace: l.namespace, id: l.id, labels: jsonColumn(l.labels) }));
}

/** Every resource every lease holds (every resource of the leases changed since `since`). */
export function allLeaseResources(q: Queryable, since?: string): Promise<LeaseResourceRecord[]> {
  return q.query<{
    namespace: string;
    lease: string;
    kind: ParsedResource['kind'];
    snapshotter: string;
    id: string;
  }>(
    since === undefined
      ? 'SELECT namespace, lease, kind, snapshotter, id FROM metadata.lease_resources'
      : `WITH changed AS (${changedLeases})
         SELECT r.namespace, r.lease, r.kind, r.snapshotter, r.id FROM metadata.lease_resources r
         JOIN changed c ON c.namespace = r.namespace AND c.id = r.lease`,
    since === undefined ? [] : [changeParam(since)],
  );
}

/** Every image of every namespace (or those written since `since`), with the digest of its target. */
export async function allImageTargets(q: Queryable, since?: string): Promise<ImageTargetRecord[]> {
  type Row = { namespace: string; name: string; target_digest: string; labels: Labels | string };
  const select = 'SELECT namespace, name, target_digest, labels FROM metadata.images i';
  const rows =
    since === undefined
      ? await readPages<Row>((after, limit) =>
          q.query<Row>(`${select} WHERE (namespace, name) > ($1, $2) ORDER BY namespace, name LIMIT $3`, [
            after?.namespace ?? '',
            after?.name ?? '',
            limit,
          ]),
        )
      : await q.query<Row>(`${select} WHERE ${writtenSince('i', 1)}`, [changeParam(since)]);
  return rows.map((i) => ({
    namespace: i.namespace,
    name: i.name,
    target: i.target_digest,
    labels: jsonColumn(i.labels),
  }));
}

/** Every container of every namespace (or those written since `since`), with the snapshot it names. */
export async function allContainerSnapshots(q: Queryable, since?: string): Promise<ContainerSnapshotRecord[]> {
  const changed = changedRows('c', since);
  const rows = await q.query<{
    namespace: string;
    id: string;
    snapshotter: string;
    snapshot_key: string;
    labels: Labels | string;
  }>(
    `SELECT namespace, id, snapshotter, snapshot_key, labels FROM metadata.containers c${changed.where}`,
    changed.params,
  );
  return rows.map((c) => ({
    namespace: c.namespace,
    id: c.id,
    snapshotter: c.snapshotter,
    snapshotKey: c.snapshot_key,
    labels: jsonColumn(c.labels),
  }));
}

/** Deletes these leases (their resources cascade); returns how many there were. */
export async function deleteLeases(
  q: Queryable,
  leases: ReadonlyArray<{ readonly namespace: string; readonly id: string }>,
): Promise<number> {
  const gone = await q.query(
    `DELETE FROM metadata.leases l USING unnest($1::text[], $2::text[]) AS d(namespace, id)
     WHERE l.namespace = d.namespace AND l.id = d.id RETURNING l.id`,
    [leases.map((l) => l.namespace), leases.map((l) => l.id)],
  );
  return gone.length;
}

/** Deletes these images; returns the ones there were. */
export function deleteImages(
  q: Queryable,
  images: ReadonlyArray<{ readonly namespace: string; readonly name: string }>,
): Promise<Array<{ namespace: string; name: string }>> {
  return q.query<{ namespace: string; name: string }>(
    `DELETE FROM metadata.images i USING unnest($1::text[], $2::text[]) AS d(namespace, name)
     WHERE i.namespace = d.namespace AND i.name = d.name RETURNING i.namespace, i.name`,
    [images.map((i) => i.namespace), images.map((i) => i.name)],
  );
}
