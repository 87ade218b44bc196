import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Db, openDb } from './db.js';
import { ErrorCode, ServiceError } from './errors.js';
import { pgliteSession } from './pglite-session.js';

const timesPrepared = async (db: Db, text: string): Promise<number> =>
  (
    await db.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement = $1', [text])
  )[0]?.n ?? 0;

describe('PGlite statements (pglite-session)', () => {
  let db: Db;
  beforeAll(async () => {
    db = await openDb('pglite://memory');
    await db.exec(`CREATE TABLE t (id text PRIMARY KEY, n bigint, at timestamptz, labels jsonb, bytes bytea,
      ok boolean, tags text[])`);
  });
  afterAll(async () => {
    await db.close();
  });

  it('prepares each SQL text once and runs it again from the prepared statement', async () => {
    const text = 'SELECT id FROM t WHERE id = $1';
    await db.query(text, ['a']);
    await db.query(text, ['b']);
    await db.transaction((tx) => tx.query(text, ['c']));
    expect(await timesPrepared(db, text)).toBe(1);
  });

  it('round-trips values as PGlite query does: numbers, dates, json, bytes, booleans, arrays, null', async () => {
    const at = new Date('2026-01-02T03:04:05.678Z');
    await db.query(
      'INSERT INTO t (id, n, at, labels, bytes, ok, tags) VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7)',
      ['v', 42, at, JSON.stringify({ k: 'v' }), Buffer.from([0, 1, 255]), true, ['x', 'y"z']],
    );
    await db.query('INSERT INTO t (id) VALUES ($1)', ['nulls']);
    const [row] = await db.query('SELECT id, n, at, labels, bytes, ok, tags FROM t WHERE id = $1', ['v']);
    expect(row).toEqual({
      id: 'v',
      n: 42,
      at,
      labels: { k: 'v' },
      bytes: Uint8Array.from([0, 1, 255]),
      ok: true,
      tags: ['x', 'y"z'],
    });
    const [empty] = await db.query('SELECT n, at, labels, ok FROM t WHERE id = $1', ['nulls']);
    expect(empty).toEqual({ n: null, at: null, labels: null, ok: null });
  });

  it('keeps database errors and their codes, and recovers after them', async () => {
    await db.query('INSERT INTO t (id) VALUES ($1)', ['dup']);
    const err = await db.query('INSERT INTO t (id) VALUES ($1)', ['dup']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as ServiceError).code).toBe(ErrorCode.AlreadyExists);
    await expect(db.query('SELECT nope FROM t')).rejects.toThrow(/nope/);
    expect(await db.query('SELECT id FROM t WHERE id = $1', ['dup'])).toEqual([{ id: 'dup' }]);
  });

  it('rolls a transaction back when it throws, and refuses to commit one a failed statement aborted', async () => {
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO t (id) VALUES ($1)', ['rolled-back']);
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO t (id) VALUES ($1)', ['aborted']);
        await tx.query('INSERT INTO t (id) VALUES ($1)', ['dup']).catch(() => undefined);
      }),
    ).rejects.toThrow(/rolled back/);
    expect(await db.query('SELECT id FROM t WHERE id = ANY($1::text[])', [['rolled-back', 'aborted']])).toEqual([]);
  });

  it('answers with the new columns after a schema change', async () => {
    const text = 'SELECT * FROM t WHERE id = $1';
    expect(Object.keys((await db.query(text, ['v']))[0] ?? {})).not.toContain('extra');
    await db.exec('ALTER TABLE t ADD COLUMN extra text');
    expect(Object.keys((await db.query(text, ['v']))[0] ?? {})).toContain('extra');
    await db.query("ALTER TABLE t ADD COLUMN more text DEFAULT 'm'");
    expect((await db.query(text, ['v']))[0]).toMatchObject({ more: 'm' });
  });
});

describe('pgliteSession', () => {
  let pg: PGlite;
  beforeAll(async () => {
    pg = await PGlite.create();
  });
  afterAll(async () => {
    await pg.close();
  });

  it('keeps at most its limit of statements prepared, closing the least recently used', async () => {
    const session = pgliteSession(pg, 3);
    for (let i = 0; i < 6; i++) await session.query(`SELECT ${i} AS n`, [], false);
    expect(session.prepared).toBe(3);
    // The evicted ones are closed ahead of the next statement.
    const rows = await session.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_prepared_statements', [], false);
    expect(rows[0]?.n).toBeLessThanOrEqual(4);
    // Used again, the most recent stay prepared.
    await session.query('SELECT 5 AS n', [], false);
    expect(await session.query('SELECT 5 AS n', [], false)).toEqual([{ n: 5 }]);
  });
});
