import { type Queryable, readPages } from '@berth/common/db';
import { changedRows, changeParam, writtenSince } from '@berth/common/gc-lock';

/** The SQL of the garbage collector's read, removal and backend sweep in content (collectable/store.ts). */

export interface BlobReferenceRow {
  readonly namespace: string;
  readonly digest: string;
  readonly labels: Record<string, string>;
}

export interface IngestReferenceRow {
  readonly namespace: string;
  readonly ref: string;
  /** The digest the ingest will commit, '' when unknown. */
  readonly expected: string;
  readonly expiresAt: Date | null;
}

const jsonColumn = <T>(v: T | string): T => (typeof v === 'string' ? (JSON.parse(v) as T) : v);

/** Every namespace's blob records (or those written since the change point `point`). */
export async function allBlobReferences(q: Queryable, point?: string): Promise<BlobReferenceRow[]> {
  type Row = { namespace: string; digest: string; labels: Record<string, string> | string };
  const rows =
    point === undefined
      ? await readPages<Row>((after, limit) =>
          q.query<Row>(
            `SELECT namespace, digest, labels FROM content.blobs WHERE (namespace, digest) > ($1, $2)
             ORDER BY namespace, digest LIMIT $3`,
            [after?.namespace ?? '', after?.digest ?? '', limit],
          ),
        )
      : await q.query<Row>(`SELECT namespace, digest, labels FROM content.blobs b WHERE ${writtenSince('b', 1)}`, [
          changeParam(point),
        ]);
  return rows.map((b) => ({ namespace: b.namespace, digest: b.digest, labels: jsonColumn(b.labels) }));
}

/** Every namespace's ingests (or those written since the change point `point`). */
export async function allIngestReferences(q: Queryable, point?: string): Promise<IngestReferenceRow[]> {
  const changed = changedRows('i', point);
  const rows = await q.query<{ namespace: string; ref: string; expected: string; expires_at: Date | null }>(
    `SELECT namespace, ref, expected, expires_at FROM content.ingests i${changed.where}`,
    changed.params,
  );
  return rows.map((i) => ({
    namespace: i.namespace,
    ref: i.ref,
    expected: i.expected,
    expiresAt: i.expires_at === null ? null : new Date(i.expires_at),
  }));
}

/** Deletes these blob records; returns the ones that were there. */
export async function deleteBlobRecords(
  q: Queryable,
  blobs: ReadonlyArray<{ readonly namespace: string; readonly digest: string }>,
): Promise<Array<{ namespace: string; digest: string }>> {
  return q.query<{ namespace: string; digest: string }>(
    `DELETE FROM content.blobs b USING unnest($1::text[], $2::text[]) AS d(namespace, digest)
     WHERE b.namespace = d.namespace AND b.digest = d.digest RETURNING b.namespace, b.digest`,
    [blobs.map((b) => b.namespace), blobs.map((b) => b.digest)],
  );
}

/** Deletes these ingest rows; returns how many were there. */
export async function deleteIngestRecords(
  q: Queryable,
  ingests: ReadonlyArray<{ readonly namespace: string; readonly ref: string }>,
): Promise<number> {
  const gone = await q.query(
    `DELETE FROM content.ingests i USING unnest($1::text[], $2::text[]) AS d(namespace, ref)
     WHERE i.namespace = d.namespace AND i.ref = d.ref RETURNING i.bref`,
    [ingests.map((i) => i.namespace), ingests.map((i) => i.ref)],
  );
  return gone.length;
}

/** The digests a record or an ingest names: their bytes stay in the backend. */
export async function namedDigests(q: Queryable): Promise<Set<string>> {
  const rows = await q.query<{ digest: string }>(
    "SELECT DISTINCT digest FROM content.blobs UNION SELECT expected FROM content.ingests WHERE expected <> ''",
  );
  return new Set(rows.map((r) => r.digest));
}

/** The backend keys of every ingest's bytes. */
export async function ingestBackendKeys(q: Queryable): Promise<Set<string>> {
  return new Set((await q.query<{ bref: string }>('SELECT bref FROM content.ingests')).map((r) => r.bref));
}
