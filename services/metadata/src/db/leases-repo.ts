import type { Queryable } from '@berth/common/db';
import type { ParsedResource } from '../leases/resource.js';
import type { Lease } from '../leases/types.js';
import { jsonColumn } from './columns.js';
import { ensuringNamespace } from './namespaces-repo.js';

/** The SQL of the lease store (leases/store.ts); see schema.md. */

interface LeaseRow {
  [column: string]: unknown;
  id: string;
  labels: Record<string, string> | string;
  created_at: Date;
}

const fromRow = (r: LeaseRow): Lease => ({ id: r.id, labels: jsonColumn(r.labels), createdAt: r.created_at });

const kindOrder = "CASE kind WHEN 'content' THEN 0 WHEN 'ingests' THEN 1 ELSE 2 END";

export async function leaseExists(q: Queryable, ns: string, id: string): Promise<boolean> {
  const rows = await q.query('SELECT 1 FROM metadata.leases WHERE namespace = $1 AND id = $2', [ns, id]);
  return rows.length > 0;
}

/** Inserts the lease, bringing `ns` into being; already_exists (from the database edge) when it has the id. */
export async function insertLease(
  q: Queryable,
  ns: string,
  id: string,
  labels: Readonly<Record<string, string>>,
  createdAt: Date,
): Promise<void> {
  await q.query(
    `${ensuringNamespace} INSERT INTO metadata.leases (namespace, id, labels, created_at) VALUES ($1, $2, $3::text::jsonb, $4)`,
    [ns, id, JSON.stringify(labels), createdAt],
  );
}

/** Whether the lease was there to delete; its resources go with it. */
export async function deleteLease(q: Queryable, ns: string, id: string): Promise<boolean> {
  const rows = await q.query('DELETE FROM metadata.leases WHERE namespace = $1 AND id = $2 RETURNING id', [ns, id]);
  return rows.length > 0;
}

/** Every lease of `ns`, by id. */
export async function listLeases(q: Queryable, ns: string): Promise<Lease[]> {
  const rows = await q.query<LeaseRow>(
    'SELECT id, labels, created_at FROM metadata.leases WHERE namespace = $1 ORDER BY id',
    [ns],
  );
  return rows.map(fromRow);
}

/**
 * Adds `r` to the lease (nothing when it holds it already); false when there is no such lease. One statement:
 * the lease row is locked as the foreign key check would, so a concurrent delete either waits for the resource
 * or leaves no lease to add it to.
 */
export async function addLeaseResource(q: Queryable, ns: string, lease: string, r: ParsedResource): Promise<boolean> {
  const [row] = await q.query<{ found: boolean }>(
    `WITH lease AS (SELECT 1 FROM metadata.leases WHERE namespace = $1 AND id = $2 FOR KEY SHARE),
          added AS (INSERT INTO metadata.lease_resources (namespace, lease, kind, snapshotter, id)
                    SELECT $1, $2, $3, $4, $5 FROM lease ON CONFLICT DO NOTHING)
     SELECT EXISTS (SELECT 1 FROM lease) AS found`,
    [ns, lease, r.kind, r.snapshotter, r.id],
  );
  return Boolean(row?.found);
}

/** Removes `r` from the lease (nothing when it does not hold it); false when there is no such lease. */
export async function deleteLeaseResource(
  q: Queryable,
  ns: string,
  lease: string,
  r: ParsedResource,
): Promise<boolean> {
  const [row] = await q.query<{ found: boolean }>(
    `WITH lease AS (SELECT 1 FROM metadata.leases WHERE namespace = $1 AND id = $2),
          removed AS (DELETE FROM metadata.lease_resources
                      WHERE namespace = $1 AND lease = $2 AND kind = $3 AND snapshotter = $4 AND id = $5)
     SELECT EXISTS (SELECT 1 FROM lease) AS found`,
    [ns, lease, r.kind, r.snapshotter, r.id],
  );
  return Boolean(row?.found);
}

/** The resources the lease holds, as containerd lists them: content, ingests, then snapshots, each by id. */
export async function listLeaseResources(q: Queryable, ns: string, lease: string): Promise<ParsedResource[]> {
  return q.query<{ kind: ParsedResource['kind']; snapshotter: string; id: string }>(
    `SELECT kind, snapshotter, id FROM metadata.lease_resources WHERE namespace = $1 AND lease = $2
     ORDER BY ${kindOrder}, snapshotter, id`,
    [ns, lease],
  );
}
