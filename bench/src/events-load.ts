/**
 * Event bus load test: publish at a fixed rate (default 10,000 events/s for 30 s) and check that two
 * subscribers receive every event exactly once, in order; report throughput and end-to-end latency.
 *
 *   node bench/dist/events-load.js [--bus in-process|nats|both] [--rate 10000] [--seconds 30] [--nats URL]
 *
 * NATS: a fresh stream on $BERTH_TEST_NATS_URL / the local server / a spawned nats-server (@berth/testing),
 * each subscriber in its own worker thread with its own connection (as separate processes would be).
 * In-process: one bus object shared by publisher and subscribers on one event loop, as in all-in-one mode.
 * Latency = receive time − send time carried in the payload (performance.timeOrigin + now(), shared by threads).
 */
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { createInProcessBus, type EventBus } from '@berth/common/event-bus';
import { nopLogger } from '@berth/common/log';
import { createNatsBus } from '@berth/common/nats-event-bus';
import { useNats } from '@berth/testing/nats';
import { uniqueName } from '@berth/testing/unique-name';
import { summarize } from './stats.js';

const now = (): number => performance.timeOrigin + performance.now();

interface SubscriberResult {
  readonly received: number;
  readonly distinct: number;
  readonly duplicates: number;
  readonly outOfOrder: number;
  readonly firstAt: number;
  readonly lastAt: number;
  readonly latencies: Float64Array;
}

interface NatsTarget {
  readonly url: string;
  readonly stream: string;
  readonly subjectPrefix: string;
}

function payload(n: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setFloat64(0, n);
  v.setFloat64(8, now());
  return b;
}

/** Reads until `total` distinct events arrived or `deadline` passes. */
async function subscribe(bus: EventBus, total: number, deadline: number): Promise<SubscriberResult> {
  const seen = new Uint8Array(total);
  const latencies = new Float64Array(total);
  let received = 0;
  let distinct = 0;
  let duplicates = 0;
  let outOfOrder = 0;
  let last = -1;
  let firstAt = 0;
  let lastAt = 0;
  const ac = new AbortController();
  const timer = setInterval(() => {
    if (Date.now() > deadline) ac.abort();
  }, 200);
  try {
    for await (const e of bus.subscribe({ from: { kind: 'all' }, namespace: 'bench', signal: ac.signal })) {
      const at = now();
      const v = new DataView(e.event.value.buffer, e.event.value.byteOffset, e.event.value.byteLength);
      const n = v.getFloat64(0);
      received++;
      if (firstAt === 0) firstAt = at;
      lastAt = at;
      if (n < last) outOfOrder++;
      last = n;
      if (seen[n] === 1) duplicates++;
      else {
        seen[n] = 1;
        latencies[distinct] = at - v.getFloat64(8);
        distinct++;
      }
      if (distinct >= total) break;
    }
  } finally {
    clearInterval(timer);
    ac.abort();
  }
  return { received, distinct, duplicates, outOfOrder, firstAt, lastAt, latencies: latencies.slice(0, distinct) };
}

async function openNats(t: NatsTarget): Promise<EventBus> {
  return createNatsBus({
    url: t.url,
    log: nopLogger,
    stream: t.stream,
    subjectPrefix: t.subjectPrefix,
    maxAgeMs: 3600_000,
  });
}

/** Publishes `rate`/s for `seconds`, at most `window` unacknowledged at a time; returns when all are accepted. */
async function publishLoad(
  bus: EventBus,
  rate: number,
  seconds: number,
  window: number,
): Promise<{ sent: number; failed: number; ms: number; maxLagMs: number }> {
  const total = rate * seconds;
  let sent = 0;
  let failed = 0;
  let inFlight = 0;
  let maxLagMs = 0;
  let release: (() => void) | undefined;
  const start = performance.now();
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    if (due - sent > 0) maxLagMs = Math.max(maxLagMs, ((due - sent) / rate) * 1000);
    while (sent < due) {
      if (inFlight >= window) await new Promise<void>((r) => (release = r));
      const n = sent++;
      inFlight++;
      bus
        .publish({
          timestamp: new Date(),
          namespace: 'bench',
          topic: '/bench/load',
          event: { typeUrl: 'berth.bench.Load', value: payload(n) },
        })
        .catch(() => failed++)
        .finally(() => {
          inFlight--;
          const r = release;
          release = undefined;
          r?.();
        });
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  while (inFlight > 0) await new Promise((r) => setTimeout(r, 5));
  return { sent, failed, ms: performance.now() - start, maxLagMs };
}

function report(
  name: string,
  rate: number,
  seconds: number,
  pub: { sent: number; failed: number; ms: number; maxLagMs: number },
  subs: SubscriberResult[],
  t0: number,
): boolean {
  const total = rate * seconds;
  console.log(`\n== ${name}: ${total} events at ${rate}/s target (${seconds} s), 2 subscribers`);
  console.log(
    `publish: ${pub.sent} sent, ${pub.failed} failed, ${(pub.ms / 1000).toFixed(2)} s → ${Math.round(pub.sent / (pub.ms / 1000))} events/s (worst schedule lag ${pub.maxLagMs.toFixed(0)} ms)`,
  );
  let ok = pub.failed === 0;
  subs.forEach((s, i) => {
    const lat = summarize(Array.from(s.latencies));
    const lost = total - s.distinct;
    const secs = (s.lastAt - t0) / 1000;
    console.log(
      `subscriber ${i + 1}: ${s.distinct}/${total} distinct, lost ${lost}, duplicates ${s.duplicates}, out of order ${s.outOfOrder}; ` +
        `last event ${secs.toFixed(2)} s after start → ${Math.round(s.distinct / secs)} events/s; ` +
        `latency p50 ${lat.p50.toFixed(2)} ms, p90 ${lat.p90.toFixed(2)} ms, p99 ${lat.p99.toFixed(2)} ms, mean ${lat.mean.toFixed(2)} ms`,
    );
    ok &&= lost === 0 && s.duplicates === 0 && s.outOfOrder === 0;
  });
  console.log(ok ? 'RESULT: none lost, none duplicated' : 'RESULT: FAILED (see above)');
  return ok;
}

async function runInProcess(rate: number, seconds: number): Promise<boolean> {
  const bus = createInProcessBus();
  const total = rate * seconds;
  const deadline = Date.now() + (seconds * 10 + 60) * 1000;
  const subs = [subscribe(bus, total, deadline), subscribe(bus, total, deadline)];
  const t0 = now();
  const pub = await publishLoad(bus, rate, seconds, 2_000);
  const results = await Promise.all(subs);
  await bus.close();
  return report('in-process bus', rate, seconds, pub, results, t0);
}

async function runNats(rate: number, seconds: number, url: string | undefined): Promise<boolean> {
  const server = url ? undefined : await useNats();
  const target: NatsTarget = {
    url: url ?? server?.url ?? '',
    stream: uniqueName('BERTH_BENCH_'),
    subjectPrefix: uniqueName('bench.'),
  };
  const bus = await openNats(target);
  const total = rate * seconds;
  const workers = [0, 1].map(
    () =>
      new Worker(new URL(import.meta.url), {
        workerData: { target, total, deadline: Date.now() + (seconds * 10 + 60) * 1000 },
      }),
  );
  const results = workers.map(
    (w) =>
      new Promise<SubscriberResult>((resolve, reject) => {
        w.once('message', (m: SubscriberResult) => resolve(m));
        w.once('error', reject);
      }),
  );
  await Promise.all(workers.map((w) => new Promise((r) => w.once('online', r))));
  const t0 = now();
  const pub = await publishLoad(bus, rate, seconds, 4_000);
  const subs = await Promise.all(results);
  await Promise.all(workers.map((w) => w.terminate()));
  await bus.close();
  await server?.stop();
  return report(`NATS JetStream (${target.url}, file storage)`, rate, seconds, pub, subs, t0);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      bus: { type: 'string', default: 'both' },
      rate: { type: 'string', default: '10000' },
      seconds: { type: 'string', default: '30' },
      nats: { type: 'string' },
    },
  });
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  let ok = true;
  if (values.bus === 'in-process' || values.bus === 'both') ok = (await runInProcess(rate, seconds)) && ok;
  if (values.bus === 'nats' || values.bus === 'both') ok = (await runNats(rate, seconds, values.nats)) && ok;
  process.exitCode = ok ? 0 : 1;
}

if (isMainThread) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
} else {
  const { target, total, deadline } = workerData as { target: NatsTarget; total: number; deadline: number };
  const bus = await openNats(target);
  const result = await subscribe(bus, total, deadline);
  parentPort?.postMessage(result);
  await bus.close();
}
