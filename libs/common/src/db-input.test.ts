import { pgliteTestDb, postgresTestDb } from '@berth/testing/test-db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from './db.js';
import { ErrorCode, ServiceError } from './errors.js';

/** Found by the wire fuzzer (fuzz/wire.fuzz.test.ts): a NUL in an id reached Postgres and came back UNKNOWN. */
function inputSuite(name: string, open: () => Promise<{ db: Db; drop(): Promise<void> }>): void {
  describe(`Db: values the database cannot hold are invalid_argument (${name})`, () => {
    let db: Db;
    let drop: () => Promise<void>;
    beforeAll(async () => {
      ({ db, drop } = await open());
    });
    afterAll(async () => {
      await drop?.();
    });

    const codeOf = (p: Promise<unknown>): Promise<string> =>
      p.then(
        () => 'ok',
        (e: unknown) => (e instanceof ServiceError ? e.code : `not a ServiceError: ${String(e)}`),
      );

    it('a string with a NUL character', async () => {
      expect(await codeOf(db.query('SELECT $1::text AS v', ['id\u0000x']))).toBe(ErrorCode.InvalidArgument);
      expect(await codeOf(db.transaction((tx) => tx.query('SELECT $1::text AS v', ['\u0000'])))).toBe(
        ErrorCode.InvalidArgument,
      );
    });

    it('a number out of range', async () => {
      expect(await codeOf(db.query('SELECT $1::int AS v', [2 ** 40]))).toBe(ErrorCode.InvalidArgument);
    });
  });
}

inputSuite('pglite', pgliteTestDb);

inputSuite('postgres', postgresTestDb);
