import type { Db, Queryable } from '@berth/common/db';
import { enqueue, type OutboxEvent } from '@berth/common/outbox';
import type { Digest } from '../content/digest.js';
import type { Info } from '../content/types.js';

/** All SQL of the content service; see schema.md. */

interface BlobRow {
  digest: string;
  size: number | string;
  labels: Record<string, string> | string;
  created_at: Date;
  updated_at: Date;
}

export interface IngestRow {
  readonly bref: string;
  readonly ref: string;
  readonly total: number;
  readonly expected: string;
  readonly startedAt: Date;
  readonly updatedAt: Date;
}

interface RawIngestRow {
  bref: string;
  ref: string;
  total: number | string;
  expected: string;
  started_at: Date;
  updated_at: Date;
}

const toInfo = (r: BlobRow): Info => ({
  digest: r.digest as Digest,
  size: Number(r.size),
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  labels: typeof r.labels === 'string' ? (JSON.parse(r.labels) as Record<string, string>) : r.labels,
});

const toIngest = (r: RawIngestRow): IngestRow => ({
  bref: r.bref,
  ref: r.ref,
  total: Number(r.total),
  expected: r.expected,
  startedAt: r.started_at,
  updatedAt: r.updated_at,
});

const blobColumns = 'digest, size, labels, created_at, updated_at';
const ingestColumns = 'bref, ref, total, expected, started_at, updated_at';

export function createContentRepo(db: Db) {
  return {
    db,
    async blob(q: Queryable, ns: string, digest: string, forUpdate = false): Promise<Info | undefined> {
      const [row] = await q.query<BlobRow & Record<string, unknown>>(
        `SELECT ${blobColumns} FROM content.blobs WHERE namespace = $1 AND digest = $2${forUpdate ? ' FOR UPDATE' : ''}`,
        [ns, digest],
      );
      return row ? toInfo(row) : undefined;
    },
    async blobs(ns: string): Promise<Info[]> {
      const rows = await db.query<BlobRow & Record<string, unknown>>(
        `SELECT ${blobColumns} FROM content.blobs WHERE namespace = $1 ORDER BY digest`,
        [ns],
      );
      return rows.map(toInfo);
    },
    /**
     * Whether `ns` has `digest`, and its size as committed in any namespace (the bytes are shared): what
     * opening a Write asks, in one lookup.
     */
    async presence(ns: string, digest: string): Promise<{ here: boolean; size: number | undefined }> {
      const [row] = await db.query<{ here: boolean; size: number | string }>(
        'SELECT namespace = $1 AS here, size FROM content.blobs WHERE digest = $2 ORDER BY namespace = $1 DESC LIMIT 1',
        [ns, digest],
      );
      return { here: row?.here === true, size: row ? Number(row.size) : undefined };
    },
    async hasBlobs(ns: string): Promise<boolean> {
      return (await db.query('SELECT 1 FROM content.blobs WHERE namespace = $1 LIMIT 1', [ns])).length > 0;
    },
    /**
     * Records the blob committed from the ingest `bref` and deletes the ingest's row, in one statement; false
     * when the namespace already had the blob (the ingest row goes all the same).
     */
    async commitBlob(
      q: Queryable,
      c: {
        ns: string;
        digest: string;
        size: number;
        labels: Readonly<Record<string, string>>;
        at: Date;
        bref: string;
      },
    ): Promise<boolean> {
      const rows = await q.query(
        `WITH ingest AS (DELETE FROM content.ingests WHERE bref = $6)
         INSERT INTO content.blobs (namespace, digest, size, labels, created_at, updated_at)
         VALUES ($1, $2, $3, $4::text::jsonb, $5, $5) ON CONFLICT (namespace, digest) DO NOTHING RETURNING digest`,
        [c.ns, c.digest, c.size, JSON.stringify(c.labels), c.at, c.bref],
      );
      return rows.length > 0;
    },
    /**
     * Changes a blob's labels: `replace` (when given) stands for the current ones, then `drop` keys go and `set`
     * entries are added. One statement; the row as it is after, or undefined when the namespace has no such blob.
     */
    async updateLabels(
      q: Queryable,
      ns: string,
      digest: string,
      change: {
        replace: Readonly<Record<string, string>> | undefined;
        drop: readonly string[];
        set: Readonly<Record<string, string>>;
      },
      at: Date,
    ): Promise<Info | undefined> {
      const [row] = await q.query<BlobRow & Record<string, unknown>>(
        `UPDATE content.blobs SET
           labels = ((CASE WHEN $3::boolean THEN $4::text::jsonb ELSE labels END) - $5::text[]) || $6::text::jsonb,
           updated_at = $7
         WHERE namespace = $1 AND digest = $2 RETURNING ${blobColumns}`,
        [
          ns,
          digest,
          change.replace !== undefined,
          JSON.stringify(change.replace ?? {}),
          [...change.drop],
          JSON.stringify(change.set),
          at,
        ],
      );
      return row ? toInfo(row) : undefined;
    },
    async deleteBlob(q: Queryable, ns: string, digest: string): Promise<boolean> {
      return (
        (await q.query('DELETE FROM content.blobs WHERE namespace = $1 AND digest = $2 RETURNING digest', [ns, digest]))
          .length > 0
      );
    },
    async ingest(ns: string, ref: string): Promise<IngestRow | undefined> {
      const [row] = await db.query<RawIngestRow & Record<string, unknown>>(
        `SELECT ${ingestColumns} FROM content.ingests WHERE namespace = $1 AND ref = $2`,
        [ns, ref],
      );
      return row ? toIngest(row) : undefined;
    },
    async ingests(ns: string): Promise<IngestRow[]> {
      const rows = await db.query<RawIngestRow & Record<string, unknown>>(
        `SELECT ${ingestColumns} FROM content.ingests WHERE namespace = $1 ORDER BY ref`,
        [ns],
      );
      return rows.map(toIngest);
    },
    /**
     * Creates the ingest row or takes over an existing one, and leases its lock to `owner` for `lockMs`.
     * Undefined when another live owner holds it.
     */
    async lockIngest(p: {
      ns: string;
      ref: string;
      bref: string;
      total: number;
      expected: string;
      expiresAt: Date | null;
      owner: string;
      lockMs: number;
    }): Promise<(IngestRow & { created: boolean }) | undefined> {
      const [row] = await db.query<RawIngestRow & { created: boolean } & Record<string, unknown>>(
        `INSERT INTO content.ingests AS i (namespace, ref, bref, total, expected, started_at, updated_at, expires_at, lock_owner, lock_expires_at)
         VALUES ($1, $2, $3, $4, $5, now(), now(), $6, $7, now() + ($8 || ' milliseconds')::interval)
         ON CONFLICT (namespace, ref) DO UPDATE SET
           lock_owner = EXCLUDED.lock_owner,
           lock_expires_at = EXCLUDED.lock_expires_at,
           total = CASE WHEN EXCLUDED.total > 0 THEN EXCLUDED.total ELSE i.total END,
           expected = CASE WHEN EXCLUDED.expected <> '' THEN EXCLUDED.expected ELSE i.expected END
         WHERE i.lock_owner IS NULL OR i.lock_owner = EXCLUDED.lock_owner OR i.lock_expires_at < now()
         RETURNING ${ingestColumns
           .split(', ')
           .map((c) => `i.${c}`)
           .join(', ')}, (i.bref = $3) AS created`,
        [p.ns, p.ref, p.bref, p.total, p.expected, p.expiresAt, p.owner, String(p.lockMs)],
      );
      return row ? { ...toIngest(row), created: row.created } : undefined;
    },
    async renewLock(bref: string, owner: string, lockMs: number): Promise<void> {
      await db.query(
        `UPDATE content.ingests SET lock_expires_at = now() + ($3 || ' milliseconds')::interval WHERE bref = $1 AND lock_owner = $2`,
        [bref, owner, String(lockMs)],
      );
    },
    /** Releases every ingest lock; returns how many were held. */
    async unlockAllIngests(): Promise<number> {
      const rows = await db.query<{ bref: string }>(
        'UPDATE content.ingests SET lock_owner = NULL, lock_expires_at = NULL WHERE lock_owner IS NOT NULL RETURNING bref',
      );
      return rows.length;
    },
    async unlockIngest(bref: string, owner: string, updatedAt: Date): Promise<void> {
      await db.query(
        'UPDATE content.ingests SET lock_owner = NULL, lock_expires_at = NULL, updated_at = $3 WHERE bref = $1 AND lock_owner = $2',
        [bref, owner, updatedAt],
      );
    },
    async deleteIngest(q: Queryable, ns: string, ref: string): Promise<string | undefined> {
      const [row] = await q.query<{ bref: string }>(
        'DELETE FROM content.ingests WHERE namespace = $1 AND ref = $2 RETURNING bref',
        [ns, ref],
      );
      return row?.bref;
    },
    async deleteIngestByBref(q: Queryable, bref: string): Promise<void> {
      await q.query('DELETE FROM content.ingests WHERE bref = $1', [bref]);
    },
    enqueue: (q: Queryable, e: OutboxEvent) => enqueue(q, 'content', e),
  };
}

export type ContentRepo = ReturnType<typeof createContentRepo>;
