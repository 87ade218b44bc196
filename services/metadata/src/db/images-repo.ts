import type { Queryable } from '@berth/common/db';
import type { Filter } from '@berth/common/filters';
import { type FilterColumn, narrowingSql } from '../filters.js';
import type { Image } from '../images/types.js';
import { jsonColumn, numberColumn } from './columns.js';
import { ensuringNamespace } from './namespaces-repo.js';

/** The SQL of the image store (images/store.ts); see schema.md. */

interface ImageRow {
  [column: string]: unknown;
  name: string;
  labels: Record<string, string> | string;
  target_media_type: string;
  target_digest: string;
  target_size: number | string;
  target_annotations: Record<string, string> | string;
  created_at: Date;
  updated_at: Date;
}

const columns =
  'name, labels, target_media_type, target_digest, target_size, target_annotations, created_at, updated_at';

function fromRow(r: ImageRow): Image {
  return {
    name: r.name,
    labels: jsonColumn(r.labels),
    target: {
      mediaType: r.target_media_type,
      digest: r.target_digest,
      size: numberColumn(r.target_size),
      annotations: jsonColumn(r.target_annotations),
    },
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** An image as `json_build_array(<columns>)` renders it. */
type ImageJson = [string, Record<string, string>, string, string, number, Record<string, string>, string, string];

function fromJson([name, labels, mediaType, digest, size, annotations, createdAt, updatedAt]: ImageJson): Image {
  return {
    name,
    labels,
    target: { mediaType, digest, size, annotations },
    createdAt: new Date(createdAt),
    updatedAt: new Date(updatedAt),
  };
}

/** Which column answers which filter field, for narrowing a List in SQL. */
function imageColumn(path: readonly string[]): FilterColumn | undefined {
  const [first, second, ...rest] = path;
  if (first === 'name' && second === undefined) return { kind: 'text', sql: 'name' };
  if (first === 'target' && rest.length === 0) {
    if (second === 'digest') return { kind: 'text', sql: 'target_digest' };
    if (second === 'mediatype') return { kind: 'text', sql: 'target_media_type' };
  }
  if (first === 'labels' && second === undefined) return { kind: 'map', sql: 'labels' };
  if (first === 'annotations' && second === undefined) return { kind: 'map', sql: 'target_annotations' };
  return undefined;
}

/** The image `name` of `ns`; with `lock`, its row is locked FOR UPDATE. */
export async function selectImage(q: Queryable, ns: string, name: string, lock = false): Promise<Image | undefined> {
  const [row] = await q.query<ImageRow>(
    `SELECT ${columns} FROM metadata.images WHERE namespace = $1 AND name = $2${lock ? ' FOR UPDATE' : ''}`,
    [ns, name],
  );
  return row ? fromRow(row) : undefined;
}

/** The images of the namespace `params[0]` matching the SQL condition `narrowed` (none: all of them), by name. */
async function selectImages(q: Queryable, narrowed: string | undefined, params: unknown[]): Promise<Image[]> {
  // One JSON document instead of a row per image: decoding rows dominates a large list, on PGlite most.
  const [row] = await q.query<{ list: string }>(
    `SELECT coalesce(json_agg(json_build_array(${columns}) ORDER BY name), '[]')::text AS list
     FROM metadata.images WHERE namespace = $1${narrowed ? ` AND ${narrowed}` : ''}`,
    params,
  );
  return (JSON.parse(row?.list ?? '[]') as ImageJson[]).map(fromJson);
}

/** Every image of `ns`, by name. */
export function listImages(q: Queryable, ns: string): Promise<Image[]> {
  return selectImages(q, undefined, [ns]);
}

/**
 * The images of `ns` an index can pick out for `filter`, by name: a superset of its matches, which the caller
 * still filters. Undefined, without a query, when no column narrows the filter.
 */
export async function listImagesNarrowedBy(q: Queryable, ns: string, filter: Filter): Promise<Image[] | undefined> {
  const params: unknown[] = [ns];
  const narrowed = narrowingSql(filter, imageColumn, params);
  return narrowed ? selectImages(q, narrowed, params) : undefined;
}

/** Inserts the image, bringing `ns` into being; already_exists (from the database edge) when it has the name. */
export async function insertImage(q: Queryable, ns: string, image: ImageFields, at: Date): Promise<void> {
  await q.query(
    `${ensuringNamespace} INSERT INTO metadata.images (namespace, ${columns})
     VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7::text::jsonb, $8, $8)`,
    rowParams(ns, image, at),
  );
}

/** Overwrites every field of the image but its name and creation time. */
export async function updateImage(q: Queryable, ns: string, image: ImageFields, at: Date): Promise<void> {
  await q.query(
    `UPDATE metadata.images SET labels = $3::text::jsonb, target_media_type = $4, target_digest = $5,
       target_size = $6, target_annotations = $7::text::jsonb, updated_at = $8
     WHERE namespace = $1 AND name = $2`,
    rowParams(ns, image, at),
  );
}

/** Whether the image was there to delete. */
export async function deleteImage(q: Queryable, ns: string, name: string): Promise<boolean> {
  const deleted = await q.query('DELETE FROM metadata.images WHERE namespace = $1 AND name = $2 RETURNING name', [
    ns,
    name,
  ]);
  return deleted.length > 0;
}

type ImageFields = Omit<Image, 'createdAt' | 'updatedAt'>;

/** Parameters $1..$8 of the insert and the update of an image row: namespace, columns, then the time. */
function rowParams(ns: string, image: ImageFields, at: Date): unknown[] {
  return [
    ns,
    image.name,
    JSON.stringify(image.labels),
    image.target.mediaType,
    image.target.digest,
    image.target.size,
    JSON.stringify(image.target.annotations),
    at,
  ];
}
