/**
 * How soon live subscribers recover after a NATS outage: N times (default 20), stop the server (SIGTERM and
 * SIGKILL alternately), commit events to an outbox while it is down, restart it on the same port and store,
 * commit one more, and time until both subscribers have every event. Checks that nothing was lost,
 * duplicated or reordered over the whole run.
 *
 *   node bench/dist/events-outage.js [--outages 20] [--down-ms 2000] [--shared]
 *
 * Setup: a private nats-server (@berth/testing), a publishing bus (node-a) fed by an outbox relay on PGlite
 * (as metadata, content and snapshots publish), and a second bus on its own connection (node-b, as the
 * events service) with two subscriptions: one on every namespace and one filtered to the bench's. With
 * --shared, one bus (one connection) does both, as in an all-in-one berthd.
 * "Back" is when the restarted server first answers with JetStream enabled (polled every 25 ms).
 */
import { parseArgs } from 'node:util';
import { openDb } from '@berth/common/db';
import type { EventBus } from '@berth/common/event-bus';
import { nopLogger } from '@berth/common/log';
import { createNatsBus } from '@berth/common/nats-event-bus';
import { enqueue, outboxTableSql, startOutboxRelay } from '@berth/common/outbox';
import { startNatsServer } from '@berth/testing/nats';
import { summarize } from './stats.js';

const { values } = parseArgs({
  options: {
    outages: { type: 'string', default: '20' },
    'down-ms': { type: 'string', default: '2000' },
    shared: { type: 'boolean', default: false },
  },
});
const outages = Number(values.outages);
const downMs = Number(values['down-ms']);
const ns = 'bench';
const perOutage = 3;

interface Sub {
  readonly label: string;
  readonly got: Array<{ body: string; seq: number; at: number }>;
}

function subscribe(bus: EventBus, label: string, signal: AbortSignal, namespace?: string): Sub {
  const sub: Sub = { label, got: [] };
  void (async () => {
    for await (const e of bus.subscribe({ from: { kind: 'new' }, signal, ...(namespace ? { namespace } : {}) })) {
      sub.got.push({ body: new TextDecoder().decode(e.event.value), seq: e.seq, at: performance.now() });
    }
  })();
  return sub;
}

async function until(ok: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!ok()) {
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 2));
  }
  return true;
}

const nats = await startNatsServer();
const publisher = await createNatsBus({ url: nats.url, log: nopLogger, node: 'node-a' });
const reader = values.shared ? publisher : await createNatsBus({ url: nats.url, log: nopLogger, node: 'node-b' });
const db = await openDb('pglite://memory');
await db.exec(`CREATE SCHEMA b; ${outboxTableSql('b')}`);
const relay = startOutboxRelay({ db, schema: 'b', bus: publisher, log: nopLogger });
const commit = async (body: string): Promise<void> => {
  await db.transaction((tx) =>
    enqueue(tx, 'b', {
      namespace: ns,
      topic: '/bench/outage',
      typeUrl: 'bench',
      payload: new TextEncoder().encode(body),
    }),
  );
  relay.kick();
};

const ac = new AbortController();
const subs = [subscribe(reader, 'all namespaces', ac.signal), subscribe(reader, `namespace ${ns}`, ac.signal, ns)];
for (let i = 0; !subs.every((s) => s.got.length > 0); i++) {
  if (i > 100) throw new Error('subscribers never attached');
  await commit(`probe-${i}`);
  await new Promise((r) => setTimeout(r, 100));
}

const expected: string[] = [];
const firstMs: number[] = [];
const allMs: number[] = [];
let failures = 0;
for (let o = 0; o < outages; o++) {
  const how = o % 2 === 0 ? 'stop' : 'kill';
  await nats[how]();
  for (let k = 0; k < perOutage; k++) {
    const body = `o${o}-during${k}`;
    expected.push(body);
    await commit(body);
  }
  await new Promise((r) => setTimeout(r, downMs));
  await nats.restart();
  const back = performance.now();
  const after = `o${o}-after`;
  expected.push(after);
  await commit(after);
  const done = await until(() => subs.every((s) => s.got.some((g) => g.body === after)), 60_000);
  if (!done) failures++;
  const firstDuring = `o${o}-during0`;
  const first = Math.max(...subs.map((s) => s.got.find((g) => g.body === firstDuring)?.at ?? Number.NaN)) - back;
  const all = Math.max(...subs.map((s) => s.got.find((g) => g.body === after)?.at ?? Number.NaN)) - back;
  firstMs.push(first);
  allMs.push(all);
  console.log(
    `outage ${o + 1} (${how}, ${downMs} ms): first buffered event ${first.toFixed(0)} ms, all ${all.toFixed(0)} ms after NATS was back`,
  );
}

let bad = failures;
for (const s of subs) {
  const bodies = s.got.map((g) => g.body).filter((b) => !b.startsWith('probe-'));
  const seqs = s.got.map((g) => g.seq);
  const ordered = seqs.every((q, i) => i === 0 || q > (seqs[i - 1] ?? 0));
  const same = JSON.stringify(bodies) === JSON.stringify(expected);
  if (!ordered || !same) bad++;
  console.log(
    `${s.label}: ${bodies.length}/${expected.length} events, in order: ${ordered}, exactly as committed: ${same}`,
  );
}
const f = (ms: number): string => `${ms.toFixed(0)} ms`;
for (const [label, xs] of [
  ['first buffered event', firstMs],
  ['every event', allMs],
] as const) {
  const s = summarize(xs);
  console.log(
    `${label} after NATS was back (n=${s.n}): p50 ${f(s.p50)}, p90 ${f(s.p90)}, max ${f(Math.max(...xs))}, mean ${f(s.mean)}`,
  );
}
console.log(bad === 0 ? 'RESULT: every event once, in order' : `RESULT: ${bad} problem(s)`);

ac.abort();
await relay.close();
if (reader !== publisher) await reader.close();
await publisher.close();
await db.close();
await nats.dispose();
process.exit(bad === 0 ? 0 : 1);
