import type { Db } from '@berth/common/db';
import type { EventBus, StoredEvent } from '@berth/common/event-bus';
import { nopLogger } from '@berth/common/log';
import { createNatsBus } from '@berth/common/nats-event-bus';
import { ImageCreate, ImageUpdate } from '@berth/proto/containerd/events/image';
import { type NatsProcess, startNatsServer } from '@berth/testing/nats';
import { pgliteTestDb, postgresTestDb } from '@berth/testing/test-db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './harness.js';

const target = {
  mediaType: 'application/vnd.oci.image.index.v1+json',
  digest: `sha256:${'a'.repeat(64)}`,
  size: 1,
  annotations: {},
};

async function outboxSize(db: Db): Promise<number> {
  const [r] = await db.query<{ n: number | string }>('SELECT count(*) AS n FROM metadata.outbox');
  return Number(r?.n ?? 0);
}

/** Reads the stream from its start until `n` events arrived, then `quietMs` longer to catch any extra. */
async function readAll(bus: EventBus, n: number, quietMs: number): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  const ac = new AbortController();
  const deadline = setTimeout(() => ac.abort(), 60_000);
  let quiet: NodeJS.Timeout | undefined;
  for await (const e of bus.subscribe({ from: { kind: 'all' }, signal: ac.signal })) {
    out.push(e);
    if (out.length === n) quiet = setTimeout(() => ac.abort(), quietMs);
  }
  clearTimeout(deadline);
  clearTimeout(quiet);
  return out;
}

const backends: Array<[string, () => Promise<{ db: Db; drop(): Promise<void> }>]> = [
  ['PGlite', pgliteTestDb],
  ['PostgreSQL', postgresTestDb],
];

describe.each(backends)('events survive a NATS outage (%s)', (_name, open) => {
  let nats: NatsProcess;
  let bus: EventBus;
  let opened: { db: Db; drop(): Promise<void> };
  let h: Harness;

  beforeAll(async () => {
    nats = await startNatsServer();
    bus = await createNatsBus({ url: nats.url, log: nopLogger, publishTimeoutMs: 1_000 });
    opened = await open();
    h = await startHarness(opened.db, { bus, outboxPollMs: 100 });
  });
  afterAll(async () => {
    await h?.close();
    await bus?.close();
    await opened?.drop();
    await nats?.dispose();
  });

  it('1,000 images created and updated while NATS is stopped: every event arrives once, in order', async () => {
    const ns = 'outage';
    const name = (i: number): string => `registry.test/app/n${i}:v1`;
    const expected: Array<[string, string, string]> = [];
    const create = async (i: number): Promise<void> => {
      await h.call(ns, (md, o, cb) =>
        h.images.create({ image: { name: name(i), labels: { i: String(i) }, target } }, md, o, cb),
      );
      expected.push(['/images/create', name(i), String(i)]);
    };
    const update = async (i: number): Promise<void> => {
      await h.call(ns, (md, o, cb) =>
        h.images.update(
          { image: { name: name(i), labels: { i: `u${i}` }, target }, updateMask: ['labels.i'] },
          md,
          o,
          cb,
        ),
      );
      expected.push(['/images/update', name(i), `u${i}`]);
    };

    // Some traffic while NATS is up, then the server goes away in the middle of the run.
    for (let i = 0; i < 100; i++) await create(i);
    const stopping = nats.stop();
    for (let i = 100; i < 1000; i++) await create(i);
    await stopping;
    const started = Date.now();
    for (let i = 0; i < 1000; i++) await update(i);
    const updateMs = Date.now() - started;
    // Changes kept succeeding (every call above resolved) and their events wait in the outbox.
    expect(await outboxSize(opened.db)).toBeGreaterThan(1000);
    expect(nats.running).toBe(false);

    await nats.restart();
    await h.module.flushEvents();
    expect(await outboxSize(opened.db)).toBe(0);

    const reader = await createNatsBus({ url: nats.url, log: nopLogger });
    const events = await readAll(reader, expected.length, 1_000);
    await reader.close();

    const seen = events.map((e): [string, string, string] => {
      const decoded =
        e.topic === '/images/create' ? ImageCreate.decode(e.event.value) : ImageUpdate.decode(e.event.value);
      return [e.topic, decoded.name, decoded.labels.i ?? ''];
    });
    expect(events.every((e) => e.namespace === ns)).toBe(true);
    expect(seen.length).toBe(2000);
    expect(seen).toEqual(expected);
    expect(new Set(events.map((e) => e.seq)).size).toBe(events.length);
    console.info(
      `[nats-outage] ${_name}: 1000 updates during the outage took ${updateMs} ms; ${events.length} events delivered`,
    );
  }, 180_000);
});
