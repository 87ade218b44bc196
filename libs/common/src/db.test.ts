import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { usePostgres } from '@berth/testing/postgres';
import { pgliteTestDb, postgresTestDb } from '@berth/testing/test-db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Db, openDb, PGLITE_MAX_CONNECTIONS, PGLITE_SHARED_BUFFERS } from './db.js';

async function until(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

interface Listener {
  readonly got: string[];
  resets: number;
  unlisten(): Promise<void>;
}

async function listener(db: Db, channel: string): Promise<Listener> {
  const l = { got: [] as string[], resets: 0, unlisten: async () => {} };
  l.unlisten = await db.listen(
    channel,
    (p) => l.got.push(p),
    () => l.resets++,
  );
  return l;
}

function listenSuite(name: string, open: () => Promise<{ db: Db; drop(): Promise<void> }>): void {
  describe(`Db.listen: ${name}`, () => {
    let db: Db;
    let drop: () => Promise<void>;
    beforeAll(async () => {
      ({ db, drop } = await open());
    });
    afterAll(async () => {
      await drop?.();
    });

    it('resets once before resolving, then delivers notifications', async () => {
      const l = await listener(db, 'berth_t_first');
      expect(l.resets).toBe(1);
      await db.query("SELECT pg_notify('berth_t_first', 'hello')");
      await until('hello', () => l.got.includes('hello'));
      await l.unlisten();
    });

    it('delivers a NOTIFY made in a transaction only after it commits', async () => {
      const l = await listener(db, 'berth_t_tx');
      await db.transaction(async (tx) => {
        await tx.query("SELECT pg_notify('berth_t_tx', 'committed')");
        await sleep(100);
        expect(l.got).toEqual([]);
      });
      await until('committed', () => l.got.includes('committed'));
      await l.unlisten();
    });

    it('never delivers a NOTIFY made in a transaction that rolls back', async () => {
      const l = await listener(db, 'berth_t_rb');
      await expect(
        db.transaction(async (tx) => {
          await tx.query("SELECT pg_notify('berth_t_rb', 'rolled-back')");
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      // Notifications arrive in commit order: once the later one is here, the rolled-back one never will be.
      await db.query("SELECT pg_notify('berth_t_rb', 'later')");
      await until('later', () => l.got.includes('later'));
      expect(l.got).toEqual(['later']);
      await l.unlisten();
    });

    it('stops delivering to a listener after its unlisten, not to others on the channel', async () => {
      const gone = await listener(db, 'berth_t_un');
      const stays = await listener(db, 'berth_t_un');
      await gone.unlisten();
      await db.query("SELECT pg_notify('berth_t_un', 'after')");
      await until('after', () => stays.got.includes('after'));
      expect(gone.got).toEqual([]);
      await stays.unlisten();
    });
  });
}

listenSuite('PGlite', pgliteTestDb);

listenSuite('PostgreSQL server', postgresTestDb);

describe('Db.listen on a PostgreSQL server whose listen connection drops', () => {
  it('listens again by itself and resets, since notifications in between are lost', async () => {
    const pg = await usePostgres();
    const db = await openDb(pg.url);
    try {
      const l = await listener(db, 'berth_t_drop');
      expect(l.resets).toBe(1);
      const killed = await db.query<{ ok: boolean }>(
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'listen%'`,
      );
      expect(killed.map((r) => r.ok)).toEqual([true]);
      await until('a second reset', () => l.resets === 2, 15_000);
      await db.query("SELECT pg_notify('berth_t_drop', 'again')");
      await until('again', () => l.got.includes('again'));
      const marker = await listener(db, 'berth_t_drop');
      await l.unlisten();
      await db.query("SELECT pg_notify('berth_t_drop', 'after')");
      await until('after', () => marker.got.includes('after'));
      expect(l.got).toEqual(['again']);
      await marker.unlisten();
    } finally {
      await db.close();
      await pg.drop();
    }
  });
});

describe('PGlite in a directory', () => {
  it('is created by a child process, keeps its rows across reopening, and runs with a small shared memory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-pglite-'));
    try {
      const first = await openDb(`pglite://${dir}`);
      expect(existsSync(join(dir, 'PG_VERSION'))).toBe(true);
      await first.exec('CREATE TABLE kept (v text); INSERT INTO kept VALUES ($$row$$)');
      await first.close();
      const again = await openDb(`pglite://${dir}`);
      expect(await again.query('SELECT v FROM kept')).toEqual([{ v: 'row' }]);
      expect(await again.query('SHOW shared_buffers')).toEqual([{ shared_buffers: PGLITE_SHARED_BUFFERS }]);
      expect(await again.query('SHOW max_connections')).toEqual([{ max_connections: String(PGLITE_MAX_CONNECTIONS) }]);
      // Postgres's whole shared memory, resident from the start in PGlite's wasm memory (145 MB at the defaults).
      expect(await again.query('SHOW shared_memory_size')).toEqual([{ shared_memory_size: '6MB' }]);
      await again.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
