import { pgliteTestDb, postgresTestDb, type TestDb } from '@berth/testing/test-db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from './db.js';
import { ackSweep, awaitNodeSweeps, parseSweepRequest, sweepRequestChannel } from './node-sweep.js';

/** A node as the snapshots service runs one: answers the requests naming it, after `work`. */
async function node(db: Db, name: string, work: () => Promise<boolean>): Promise<() => Promise<void>> {
  return db.listen(
    sweepRequestChannel,
    (payload) => {
      const req = parseSweepRequest(payload);
      if (req.node !== name) return;
      void (async () => {
        await ackSweep(db, 'started', req);
        await ackSweep(db, (await work()) ? 'done' : 'failed', req);
      })();
    },
    () => undefined,
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function suite(kind: string, open: () => Promise<TestDb>): void {
  describe(`awaitNodeSweeps on ${kind}`, () => {
    let t: TestDb;
    const stops: Array<() => Promise<void>> = [];
    beforeAll(async () => {
      t = await open();
      stops.push(await node(t.db, 'fast', async () => true));
      stops.push(await node(t.db, 'slow', () => sleep(600).then(() => true)));
      stops.push(await node(t.db, 'broken', async () => false));
      stops.push(await node(t.db, 'stuck', () => new Promise<boolean>(() => undefined)));
    });
    afterAll(async () => {
      for (const s of stops) await s();
      await t.drop();
    });

    it('waits for every running node to free its directories, a slow one past the start window', async () => {
      const t0 = Date.now();
      const r = await awaitNodeSweeps(t.db, ['fast', 'slow'], { startMs: 300, doneMs: 5_000 });
      expect(r).toEqual({ nodes: ['fast', 'slow'], skipped: [] });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
    });

    it('skips a node that does not answer within the start window (not running), without waiting longer', async () => {
      const t0 = Date.now();
      const r = await awaitNodeSweeps(t.db, ['fast', 'down'], { startMs: 300, doneMs: 5_000 });
      expect(r).toEqual({ nodes: ['fast'], skipped: ['down'] });
      expect(Date.now() - t0).toBeLessThan(2_000);
    });

    it('skips a node that failed, and one that started but did not finish in time', async () => {
      const t0 = Date.now();
      const r = await awaitNodeSweeps(t.db, ['broken', 'stuck', 'fast'], { startMs: 300, doneMs: 1_000 });
      expect(r).toEqual({ nodes: ['fast'], skipped: ['broken', 'stuck'] });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    });

    it('returns at once for no nodes', async () => {
      expect(await awaitNodeSweeps(t.db, [], { startMs: 300, doneMs: 1_000 })).toEqual({ nodes: [], skipped: [] });
    });
  });
}

suite('PGlite', pgliteTestDb);
suite('PostgreSQL server', postgresTestDb);

describe('sweep requests', () => {
  it('carry a token only when the collector awaits the answer', () => {
    expect(parseSweepRequest('node-a')).toEqual({ node: 'node-a' });
    expect(parseSweepRequest('node-a 1234')).toEqual({ node: 'node-a', token: '1234' });
  });
});
