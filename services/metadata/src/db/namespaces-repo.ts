import type { Queryable } from '@berth/common/db';
import type { Namespace } from '../namespaces/types.js';
import { jsonColumn } from './columns.js';

/** The SQL of the namespace store (namespaces/store.ts); see schema.md. */

type LabelRow = { labels: Record<string, string> | string };

/**
 * Prefix for the statement that creates a resource in namespace `$1`: brings the namespace into being in the
 * same statement (one round trip fewer; the foreign key sees the row at the end of the statement).
 */
export const ensuringNamespace =
  'WITH ensured_namespace AS (INSERT INTO metadata.namespaces (name) VALUES ($1) ON CONFLICT (name) DO NOTHING)';

/** The labels of `name`, undefined when it has no row; with `lock`, the row is locked FOR UPDATE. */
export async function namespaceLabels(
  q: Queryable,
  name: string,
  lock = false,
): Promise<Record<string, string> | undefined> {
  const [row] = await q.query<LabelRow>(
    `SELECT labels FROM metadata.namespaces WHERE name = $1${lock ? ' FOR UPDATE' : ''}`,
    [name],
  );
  return row ? jsonColumn(row.labels) : undefined;
}

export async function listNamespaces(q: Queryable): Promise<Namespace[]> {
  const rows = await q.query<LabelRow & { name: string }>('SELECT name, labels FROM metadata.namespaces ORDER BY name');
  return rows.map((r) => ({ name: r.name, labels: jsonColumn(r.labels) }));
}

/** already_exists (from the database edge) when the namespace has a row. */
export async function insertNamespace(
  q: Queryable,
  name: string,
  labels: Readonly<Record<string, string>>,
): Promise<void> {
  await q.query('INSERT INTO metadata.namespaces (name, labels) VALUES ($1, $2::text::jsonb)', [
    name,
    JSON.stringify(labels),
  ]);
}

/** Creates the namespace with `labels`, or replaces the labels of the existing one. */
export async function putNamespaceLabels(
  q: Queryable,
  name: string,
  labels: Readonly<Record<string, string>>,
): Promise<void> {
  await q.query(
    `INSERT INTO metadata.namespaces (name, labels) VALUES ($1, $2::text::jsonb)
     ON CONFLICT (name) DO UPDATE SET labels = EXCLUDED.labels, updated_at = now()`,
    [name, JSON.stringify(labels)],
  );
}

/** Locks the namespace's row FOR UPDATE; false when it has none. */
export async function lockNamespace(q: Queryable, name: string): Promise<boolean> {
  const rows = await q.query('SELECT name FROM metadata.namespaces WHERE name = $1 FOR UPDATE', [name]);
  return rows.length > 0;
}

export async function deleteNamespace(q: Queryable, name: string): Promise<void> {
  await q.query('DELETE FROM metadata.namespaces WHERE name = $1', [name]);
}

/** Whether this service's own tables still hold images, containers in the namespace. */
export async function namespaceHolds(q: Queryable, name: string): Promise<{ images: boolean; containers: boolean }> {
  const [row] = await q.query<{ images: boolean; containers: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM metadata.images WHERE namespace = $1) AS images,
            EXISTS (SELECT 1 FROM metadata.containers WHERE namespace = $1) AS containers`,
    [name],
  );
  return { images: Boolean(row?.images), containers: Boolean(row?.containers) };
}
