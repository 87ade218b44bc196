import { afterEach, describe, expect, it } from 'vitest';
import { type Db, openDb } from './db.js';
import type { EventEnvelope, EventPublisher } from './event-bus.js';
import { nopLogger } from './log.js';
import { enqueue, outboxTableSql, startOutboxRelay } from './outbox.js';

/** The database, counting the relay's reads of the outbox. */
function counting(db: Db): { db: Db; reads: () => number } {
  let reads = 0;
  const count = (text: string): void => {
    if (/FROM t\.outbox ORDER BY id/.test(text)) reads++;
  };
  return {
    db: {
      ...db,
      kind: db.kind,
      query: (text, params) => {
        count(text);
        return db.query(text, params);
      },
      transaction: (fn) =>
        db.transaction((tx) =>
          fn({
            query: (text, params) => {
              count(text);
              return tx.query(text, params);
            },
            exec: (text) => tx.exec(text),
          }),
        ),
    },
    reads: () => reads,
  };
}

describe('outbox relay', () => {
  let db: Db | undefined;
  afterEach(async () => {
    await db?.close();
    db = undefined;
  });

  const setUp = async (): Promise<{ db: Db; reads: () => number; got: EventEnvelope[]; bus: EventPublisher }> => {
    db = await openDb('pglite://memory');
    await db.exec(`CREATE SCHEMA t; ${outboxTableSql('t')}`);
    const got: EventEnvelope[] = [];
    return { ...counting(db), got, bus: { publish: async (e) => void got.push(e) } };
  };

  const commitEvent = (d: Db, n: number): Promise<void> =>
    d.transaction((tx) =>
      enqueue(tx, 't', { namespace: 'ns', topic: `/test/${n}`, typeUrl: 'x', payload: new Uint8Array([n]) }),
    );

  const arrived = async (got: EventEnvelope[], n: number): Promise<void> => {
    const deadline = Date.now() + 5_000;
    while (got.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  };

  it('a burst of commits shares one read of the outbox, and every event arrives once, in order', async () => {
    const s = await setUp();
    const relay = startOutboxRelay({
      db: s.db,
      schema: 't',
      bus: s.bus,
      log: nopLogger,
      coalesceMs: 1_000,
      pollMs: 60_000,
    });
    await new Promise((r) => setTimeout(r, 50)); // the relay's first look at start
    const before = s.reads();
    for (let i = 0; i < 20; i++) {
      await commitEvent(s.db, i);
      relay.kick();
    }
    await arrived(s.got, 20);
    expect(s.got.map((e) => e.topic)).toEqual(Array.from({ length: 20 }, (_, i) => `/test/${i}`));
    expect(s.reads() - before).toBe(1);
    await relay.close();
  });

  it('without coalescing, a kick reads at once; flush never waits for the window', async () => {
    const s = await setUp();
    const eager = startOutboxRelay({ db: s.db, schema: 't', bus: s.bus, log: nopLogger, coalesceMs: 0 });
    await new Promise((r) => setTimeout(r, 50));
    await commitEvent(s.db, 1);
    eager.kick();
    await arrived(s.got, 1);
    expect(s.got).toHaveLength(1);
    await eager.close();

    const slow = startOutboxRelay({ db: s.db, schema: 't', bus: s.bus, log: nopLogger, coalesceMs: 60_000 });
    await commitEvent(s.db, 2);
    slow.kick();
    await slow.flush();
    expect(s.got.map((e) => e.topic)).toEqual(['/test/1', '/test/2']);
    await slow.close();
  });

  it('several callers waiting in flush at once are all woken (no single-waiter slot)', async () => {
    const s = await setUp();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    // The bus holds the first event until released, so every flush below waits on the same relay run.
    const bus: EventPublisher = {
      publish: async (e) => {
        await gate;
        s.got.push(e);
      },
    };
    const relay = startOutboxRelay({ db: s.db, schema: 't', bus, log: nopLogger, coalesceMs: 0, pollMs: 60_000 });
    for (let i = 0; i < 3; i++) await commitEvent(s.db, i);
    const flushes = [relay.flush(), relay.flush(), relay.flush()];
    release();
    const all = await Promise.race([
      Promise.all(flushes).then(() => 'all woken'),
      new Promise((r) => setTimeout(() => r('a flush was left waiting'), 3_000)),
    ]);
    expect(all).toBe('all woken');
    expect(s.got.map((e) => e.topic)).toEqual(['/test/0', '/test/1', '/test/2']);
    await relay.close();
  });
});
