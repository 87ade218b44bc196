import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Db, deferOrQuery, openDb } from './db.js';
import { ErrorCode, ServiceError } from './errors.js';
import { parseBytea, pgliteSession, serializeBytea } from './pglite-session.js';

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

  it('fails a transaction whose deferred statement fails, with its translated code, keeping none of it', async () => {
    await db.query('INSERT INTO t (id) VALUES ($1) ON CONFLICT DO NOTHING', ['taken']);
    const err = await db
      .transaction(async (tx) => {
        await tx.query('INSERT INTO t (id) VALUES ($1)', ['first-of-failed']);
        await deferOrQuery(tx, 'INSERT INTO t (id) VALUES ($1)', ['taken']);
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as ServiceError).code).toBe(ErrorCode.AlreadyExists);
    expect(await db.query('SELECT id FROM t WHERE id = $1', ['first-of-failed'])).toEqual([]);
    // The session is usable again, in and out of transactions.
    await db.transaction((tx) => deferOrQuery(tx, 'INSERT INTO t (id) VALUES ($1)', ['after']));
    expect(await db.query('SELECT id FROM t WHERE id = $1', ['after'])).toEqual([{ id: 'after' }]);
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

  it('reads and writes bytea exactly as PGlite does', async () => {
    const pgParse = pg.parsers[17];
    const pgSerialize = pg.serializers[17];
    for (const bytes of [new Uint8Array(0), Uint8Array.from([0, 1, 127, 128, 255]), randomBytes(5000)]) {
      // A view into a larger buffer, as a Buffer from Node's pool is.
      const whole = Buffer.concat([Buffer.from([9, 9]), bytes]);
      const view = new Uint8Array(whole.buffer, whole.byteOffset + 2, bytes.length);
      expect(serializeBytea(view)).toBe(pgSerialize?.(bytes));
      const text = pgSerialize?.(bytes) ?? '';
      expect(parseBytea(text)).toEqual(pgParse?.(text, 17));
      expect(parseBytea(text)).toBeInstanceOf(Uint8Array);
    }
    // Through Postgres: what the session writes is what Postgres stores, and it reads back the same.
    // A PGlite of its own: the statement names of two sessions on one database would collide.
    const own = await PGlite.create();
    const session = pgliteSession(own);
    await session.exec('CREATE TABLE b (id int PRIMARY KEY, v bytea)', false);
    const big = randomBytes(20_000);
    await session.query('INSERT INTO b (id, v) VALUES ($1, $2)', [1, big], false);
    const [row] = await session.query<{ v: Uint8Array; n: number; h: string }>(
      "SELECT v, length(v) AS n, encode(substring(v from 1 for 4), 'hex') AS h FROM b WHERE id = $1",
      [1],
      false,
    );
    expect(row?.n).toBe(big.length);
    expect(row?.h).toBe(big.subarray(0, 4).toString('hex'));
    expect(Buffer.from(row?.v ?? new Uint8Array()).equals(big)).toBe(true);
    await own.close();
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

  it('sends a transaction in two calls: BEGIN with its first statement, deferred ones with the COMMIT', async () => {
    const own = await PGlite.create();
    const session = pgliteSession(own);
    await session.exec('CREATE TABLE w (id text PRIMARY KEY); CREATE TABLE o (id bigserial, what text)', false);
    const write = (id: string) => session.query('INSERT INTO w (id) VALUES ($1) RETURNING id', [id], true);
    const note = (what: string) => session.defer('INSERT INTO o (what) VALUES ($1)', [what]);
    // Prepared once, outside the counted transactions.
    session.begin();
    await write('warm');
    await note('warm');
    await session.commit();
    let calls = 0;
    const exec = own.execProtocolStream.bind(own);
    own.execProtocolStream = (async (...args: Parameters<typeof exec>) => {
      calls++;
      return exec(...args);
    }) as typeof exec;

    session.begin();
    expect(await write('a')).toEqual([{ id: 'a' }]);
    await note('wrote a');
    expect(await session.commit()).toBe('COMMIT');
    expect(calls).toBe(2);

    // A deferred statement's failure fails the commit with its code, and nothing of the transaction stays.
    session.begin();
    await write('b');
    await session.defer('INSERT INTO w (id) VALUES ($1)', ['a']);
    await expect(session.commit()).rejects.toMatchObject({ code: '23505' });

    // Rolled back before anything was sent: nothing is sent. An empty transaction sends nothing either.
    calls = 0;
    session.begin();
    await note('never');
    await session.rollback();
    session.begin();
    expect(await session.commit()).toBe('COMMIT');
    expect(calls).toBe(0);

    // Rolled back after its first statement: undone.
    session.begin();
    await write('c');
    await session.rollback();

    // Only a statement without rows, and only in a transaction.
    await expect(session.defer('INSERT INTO o (what) VALUES ($1)', ['x'])).rejects.toThrow(/outside a transaction/);
    session.begin();
    await expect(session.defer('SELECT id FROM w WHERE id = $1', ['a'])).rejects.toThrow(
      /returns no rows can be deferred/,
    );
    await session.rollback();

    own.execProtocolStream = exec;
    expect(await session.query('SELECT id FROM w ORDER BY id', [], false)).toEqual([{ id: 'a' }, { id: 'warm' }]);
    expect(await session.query('SELECT what FROM o ORDER BY id', [], false)).toEqual([
      { what: 'warm' },
      { what: 'wrote a' },
    ]);
    expect(await session.query('SELECT 1 AS n', [], false)).toEqual([{ n: 1 }]);
    await own.close();
  });
});
