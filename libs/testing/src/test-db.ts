import { type Db, openDb } from '@berth/common/db';
import { usePostgres } from './postgres.js';

/** A database a test suite opens and drops: a fresh one on the Postgres server, or PGlite in memory. */
export interface TestDb {
  readonly db: Db;
  drop(): Promise<void>;
}

/** A fresh database on the test Postgres server, opened; `drop` closes it and drops the database. */
export async function postgresTestDb(): Promise<TestDb> {
  const pg = await usePostgres();
  const db = await openDb(pg.url);
  return {
    db,
    drop: async () => {
      await db.close();
      await pg.drop();
    },
  };
}

/** PGlite in memory; `drop` closes it. */
export async function pgliteTestDb(): Promise<TestDb> {
  const db = await openDb('pglite://memory');
  return { db, drop: () => db.close() };
}
