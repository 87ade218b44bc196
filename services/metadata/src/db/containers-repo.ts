import type { Queryable } from '@berth/common/db';
import { withoutEmpty } from '@berth/common/labels';
import type { AnyValue, Container, ContainerInput } from '../containers/types.js';
import { sortedMap } from '../label-maps.js';
import { bytesColumn, jsonColumn } from './columns.js';
import { ensuringNamespace } from './namespaces-repo.js';

/** The SQL of the container store (containers/store.ts); see schema.md. */

type StoredExtensions = Record<string, { type_url: string; value: string }>;

interface ContainerRow {
  [column: string]: unknown;
  id: string;
  labels: Record<string, string> | string;
  image: string;
  runtime_name: string;
  runtime_options_type: string | null;
  runtime_options: Uint8Array | null;
  spec_type: string;
  spec: Uint8Array;
  snapshotter: string;
  snapshot_key: string;
  extensions: StoredExtensions | string;
  created_at: Date;
  updated_at: Date;
}

const columns =
  'id, labels, image, runtime_name, runtime_options_type, runtime_options, spec_type, spec, snapshotter, snapshot_key, extensions, created_at, updated_at';

function fromRow(r: ContainerRow): Container {
  const extensions: Record<string, AnyValue> = {};
  for (const [k, v] of Object.entries(jsonColumn(r.extensions))) {
    extensions[k] = { typeUrl: v.type_url, value: Buffer.from(v.value, 'base64') };
  }
  return {
    id: r.id,
    labels: jsonColumn(r.labels),
    image: r.image,
    runtime: {
      name: r.runtime_name,
      options:
        r.runtime_options_type === null
          ? undefined
          : { typeUrl: r.runtime_options_type, value: bytesColumn(r.runtime_options ?? new Uint8Array()) },
    },
    spec: { typeUrl: r.spec_type, value: bytesColumn(r.spec) },
    snapshotter: r.snapshotter,
    snapshotKey: r.snapshot_key,
    extensions,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function storedExtensions(ext: Readonly<Record<string, AnyValue>>): StoredExtensions {
  const out: StoredExtensions = {};
  for (const [k, v] of Object.entries(sortedMap(ext))) {
    out[k] = { type_url: v.typeUrl, value: Buffer.from(v.value).toString('base64') };
  }
  return out;
}

/** Parameters $1..$14 of the insert and the update of a container row: namespace, then the columns. */
function rowParams(ns: string, c: ContainerInput, createdAt: Date, updatedAt: Date): unknown[] {
  const spec = c.spec ?? { typeUrl: '', value: new Uint8Array() };
  return [
    ns,
    c.id,
    JSON.stringify(sortedMap(withoutEmpty(c.labels))),
    c.image,
    c.runtime.name,
    c.runtime.options?.typeUrl ?? null,
    c.runtime.options ? Buffer.from(c.runtime.options.value) : null,
    spec.typeUrl,
    Buffer.from(spec.value),
    c.snapshotter,
    c.snapshotKey,
    JSON.stringify(storedExtensions(c.extensions)),
    createdAt,
    updatedAt,
  ];
}

/** The container `id` of `ns`; with `lock`, its row is locked FOR UPDATE. */
export async function selectContainer(
  q: Queryable,
  ns: string,
  id: string,
  lock = false,
): Promise<Container | undefined> {
  const [row] = await q.query<ContainerRow>(
    `SELECT ${columns} FROM metadata.containers WHERE namespace = $1 AND id = $2${lock ? ' FOR UPDATE' : ''}`,
    [ns, id],
  );
  return row ? fromRow(row) : undefined;
}

/** Every container of `ns`, by id. */
export async function listContainers(q: Queryable, ns: string): Promise<Container[]> {
  const rows = await q.query<ContainerRow>(
    `SELECT ${columns} FROM metadata.containers WHERE namespace = $1 ORDER BY id`,
    [ns],
  );
  return rows.map(fromRow);
}

/** Whether `ns` holds any container. */
export async function anyContainerIn(q: Queryable, ns: string): Promise<boolean> {
  return (await q.query('SELECT 1 FROM metadata.containers WHERE namespace = $1 LIMIT 1', [ns])).length > 0;
}

/** Inserts the container, bringing `ns` into being; already_exists (from the database edge) when it has the id. */
export async function insertContainer(
  q: Queryable,
  ns: string,
  c: ContainerInput,
  createdAt: Date,
  updatedAt: Date,
): Promise<void> {
  await q.query(
    `${ensuringNamespace} INSERT INTO metadata.containers (namespace, ${columns})
     VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::jsonb, $13, $14)`,
    rowParams(ns, c, createdAt, updatedAt),
  );
}

/** Overwrites every field of the container but its id. */
export async function updateContainer(
  q: Queryable,
  ns: string,
  c: ContainerInput,
  createdAt: Date,
  updatedAt: Date,
): Promise<void> {
  await q.query(
    `UPDATE metadata.containers SET labels = $3::text::jsonb, image = $4, runtime_name = $5, runtime_options_type = $6,
       runtime_options = $7, spec_type = $8, spec = $9, snapshotter = $10, snapshot_key = $11,
       extensions = $12::text::jsonb, created_at = $13, updated_at = $14
     WHERE namespace = $1 AND id = $2`,
    rowParams(ns, c, createdAt, updatedAt),
  );
}

/** Whether the container was there to delete. */
export async function deleteContainer(q: Queryable, ns: string, id: string): Promise<boolean> {
  const deleted = await q.query('DELETE FROM metadata.containers WHERE namespace = $1 AND id = $2 RETURNING id', [
    ns,
    id,
  ]);
  return deleted.length > 0;
}
