import { pgliteTestDb, postgresTestDb, type TestDb } from '@berth/testing/test-db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  holdCollectionLockExclusive,
  holdCollectionLockShared,
  holdContentLockExclusive,
  holdContentLockShared,
} from './gc-lock.js';

const advisoryLocks = "SELECT mode FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() ORDER BY mode";

describe('gc locks on a server: transaction-scoped advisory locks', () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await postgresTestDb();
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('holds them until the transaction ends', async () => {
    const held = await t.db.transaction(async (tx) => {
      await holdCollectionLockShared(tx);
      await holdContentLockShared(tx);
      return (await tx.query<{ mode: string }>(advisoryLocks)).map((r) => r.mode);
    });
    // The collection and sweep locks, and the content lock.
    expect(held).toEqual(['ShareLock', 'ShareLock', 'ShareLock']);
    expect(await t.db.query(advisoryLocks)).toEqual([]);
  });
});

describe('gc locks on PGlite: one session, one transaction at a time', () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await pgliteTestDb();
  });
  afterAll(async () => {
    await t?.drop();
  });

  it('sends nothing: in one session an advisory lock could never wait', async () => {
    expect(t.db.serialized).toBe(true);
    const held = await t.db.transaction(async (tx) => {
      await holdCollectionLockShared(tx);
      await holdContentLockShared(tx);
      await holdCollectionLockExclusive(tx);
      await holdContentLockExclusive(tx);
      return tx.query(advisoryLocks);
    });
    expect(held).toEqual([]);
  });
});
