import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { TestServerUnavailableError } from './attempts.js';
import type { TestPostgres } from './postgres.js';
import { usePostgres } from './postgres.js';
import { startPostgresServer } from './postgres-server.js';

async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (v: Record<string, string | undefined>): void => {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) delete process.env[k];
      else process.env[k] = val;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

const ms = (t0: number): string => `${(performance.now() - t0).toFixed(0)} ms`;

async function roundTrip(url: string): Promise<void> {
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  try {
    await sql`CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)`;
    await sql`INSERT INTO items (name) VALUES ('a'), ('b')`;
    const rows = await sql<{ id: number; name: string }[]>`SELECT id, name FROM items ORDER BY id`;
    expect(rows.map((r) => r.name)).toEqual(['a', 'b']);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function databaseExists(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`SELECT 1`;
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === '3D000') return false; // invalid_catalog_name
    throw err;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

describe('usePostgres', () => {
  let pg: TestPostgres | undefined;
  afterEach(async () => {
    await pg?.drop();
    pg = undefined;
  });

  it('gives a fresh empty database that works and is dropped afterwards', async () => {
    const t0 = performance.now();
    pg = await usePostgres();
    console.info(`usePostgres (${pg.source}) ready in ${ms(t0)}`);
    expect(pg.database).toMatch(/^berth_t_[0-9a-f]{12}$/);
    expect(new URL(pg.url).pathname).toBe(`/${pg.database}`);

    const sql = postgres(pg.url, { max: 1 });
    const tables = await sql`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'`;
    await sql.end();
    expect(tables[0]!['n']).toBe(0);

    await roundTrip(pg.url);

    // A second caller gets a different database.
    const other = await usePostgres();
    try {
      expect(other.database).not.toBe(pg.database);
      await roundTrip(other.url); // same table name, no clash
    } finally {
      await other.drop();
    }

    const url = pg.url;
    await pg.drop();
    pg = undefined;
    expect(await databaseExists(url)).toBe(false);
  });

  it('drop() works while connections are still open', async () => {
    pg = await usePostgres();
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    await sql`SELECT 1`;
    await pg.drop();
    pg = undefined;
    await sql.end({ timeout: 1 }).catch(() => {});
  });
});

describe('startPostgresServer (the fallback when no server is around)', () => {
  it('initdb + pg_ctl start a private cluster, usable through BERTH_TEST_POSTGRES_URL', async () => {
    const t0 = performance.now();
    const server = await startPostgresServer();
    console.info(`startPostgresServer ready in ${ms(t0)} on port ${server.port}`);
    const saved = process.env['BERTH_TEST_POSTGRES_URL'];
    try {
      expect(server.port).not.toBe(5432);
      const sql = postgres(server.adminUrl, { max: 1 });
      const [row] = await sql<{ fsync: string }[]>`SHOW fsync`;
      await sql.end();
      expect(row?.fsync).toBe('off');

      process.env['BERTH_TEST_POSTGRES_URL'] = server.adminUrl;
      const pg = await usePostgres();
      expect(pg.source).toBe('env');
      expect(new URL(pg.url).port).toBe(String(server.port));
      await roundTrip(pg.url);
      await pg.drop();
      expect(await databaseExists(pg.url)).toBe(false);
    } finally {
      if (saved === undefined) delete process.env['BERTH_TEST_POSTGRES_URL'];
      else process.env['BERTH_TEST_POSTGRES_URL'] = saved;
      const t1 = performance.now();
      await server.stop();
      console.info(`startPostgresServer stopped in ${ms(t1)}`);
    }
    const sql = postgres(server.adminUrl, { max: 1, connect_timeout: 2 });
    await expect(sql`SELECT 1`).rejects.toThrow();
    await sql.end({ timeout: 1 });
  });

  it('a BERTH_TEST_POSTGRES_URL that does not work is a loud error, not a fallback', async () => {
    const saved = process.env['BERTH_TEST_POSTGRES_URL'];
    process.env['BERTH_TEST_POSTGRES_URL'] = 'postgres://postgres@127.0.0.1:1/postgres';
    try {
      await expect(usePostgres()).rejects.toThrow(/BERTH_TEST_POSTGRES_URL is set but/);
    } finally {
      if (saved === undefined) delete process.env['BERTH_TEST_POSTGRES_URL'];
      else process.env['BERTH_TEST_POSTGRES_URL'] = saved;
    }
  });
});

describe('usePostgres without any server around (BERTH_TEST_LOOPBACK=0)', () => {
  it('spawns a private cluster, shares it between callers, stops it after the last drop', async () => {
    await withEnv({ BERTH_TEST_LOOPBACK: '0', BERTH_TEST_POSTGRES_URL: undefined }, async () => {
      const t0 = performance.now();
      const a = await usePostgres();
      console.info(`usePostgres (${a.source}) ready in ${ms(t0)}`);
      const b = await usePostgres();
      expect(a.source).toBe('spawned');
      expect(new URL(b.url).port).toBe(new URL(a.url).port);
      await roundTrip(a.url);
      await roundTrip(b.url);
      await a.drop();
      expect(await databaseExists(b.url)).toBe(true); // server still up for b
      await b.drop();
      const sql = postgres(b.url, { max: 1, connect_timeout: 2 });
      await expect(sql`SELECT 1`).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      await sql.end({ timeout: 1 });
    });
  });

  it('throws a TestServerUnavailableError listing every attempt when nothing works', async () => {
    await withEnv(
      { BERTH_TEST_LOOPBACK: '0', BERTH_TEST_POSTGRES_URL: undefined, BERTH_TEST_PG_BIN: '/nonexistent/bin' },
      async () => {
        const err: unknown = await usePostgres().then(
          () => new Error('expected usePostgres to fail'),
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(TestServerUnavailableError);
        const e = err as TestServerUnavailableError;
        expect(e.attempts).toHaveLength(4);
        expect(e.message).toMatch(/testcontainers[\s\S]*BERTH_TEST_POSTGRES_URL[\s\S]*loopback[\s\S]*initdb failed/);
      },
    );
  });
});
