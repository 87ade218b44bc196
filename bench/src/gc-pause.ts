/**
 * How long a collection holds writers out, with many records, Berth beside containerd: N images (each a root
 * reaching its own manifest blob) and M snapshot records (chains of 10, all but M/10 referenced by nothing).
 * A writer creates images one at a time while collections run; reported per collection: its longest hold of
 * the writers' lock, its total time and the writers' latency while it ran; and the writers' latency alone.
 *
 *   pnpm --filter @berth/bench gc-pause [--systems berth,containerd] [--images 10000] [--snapshots 50000]
 *                                       [--collections 5] [--postgres URL | --postgres-server]
 *
 * The first collection sweeps a backlog (the 45,000 unreferenced snapshot records); before each later one, 10
 * images are removed and 100 unreferenced snapshot records appear, as on a busy node (untimed: the writer waits);
 * the images the writer created until then are removed first (untimed), so both sides go on from the same shape.
 * Berth runs in this process (gc-pause-berth.ts), containerd in its own, over its socket (gc-pause-containerd.ts).
 */
import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { usePostgres } from '@berth/testing/postgres';
import { berthSystem } from './gc-pause-berth.js';
import { containerdSystem } from './gc-pause-containerd.js';
import type { CollectionFigures, GcSystem, ShapeOptions } from './gc-pause-system.js';
import { percentile } from './stats.js';

const { values } = parseArgs({
  options: {
    systems: { type: 'string', default: 'berth,containerd' },
    images: { type: 'string', default: '10000' },
    snapshots: { type: 'string', default: '50000' },
    collections: { type: 'string', default: '5' },
    postgres: { type: 'string' },
    // A fresh database for the Berth side from @berth/testing/postgres (its first server that works), dropped at the end.
    'postgres-server': { type: 'boolean' },
  },
});
const shape: ShapeOptions = { images: Number(values.images), snapshots: Number(values.snapshots) };
if (shape.snapshots % 10 !== 0) throw new Error('--snapshots must be a multiple of 10 (chains of 10)');
const nCollections = Number(values.collections);
const systems = values.systems.split(',').map((s) => s.trim());
for (const s of systems) if (s !== 'berth' && s !== 'containerd') throw new Error(`unknown system ${s}`);

interface Write {
  readonly start: number;
  readonly end: number;
}
interface Latency {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly n: number;
}
interface Collection extends CollectionFigures {
  readonly writers: Latency;
}
interface Result {
  readonly label: string;
  readonly loaded: string;
  readonly alone: Latency;
  readonly backlog: Collection;
  readonly steady: Collection[];
  /** Every write of the steady phase (between and during collections; not the untimed churn). */
  readonly steadyWriters: Latency;
  /** Writes that overlapped a steady collection. */
  readonly duringSteady: Latency;
  /** The event loop's delay during the backlog and the steady phase (where the collector shares it). */
  readonly eventLoop?: {
    readonly backlog: { readonly p99: number; readonly max: number };
    readonly steady: { readonly p99: number; readonly max: number };
  };
  readonly verified: string;
}

const latency = (writes: readonly Write[]): Latency => {
  const ms = writes.map((w) => w.end - w.start).sort((a, b) => a - b);
  return { p50: percentile(ms, 50), p99: percentile(ms, 99), max: percentile(ms, 100), n: ms.length };
};
const within = (writes: readonly Write[], from: number, to: number): Write[] =>
  writes.filter((w) => w.end > from && w.start < to);
const f = (ms: number): string => ms.toFixed(1);
const lat = (l: Latency): string => `p50 ${f(l.p50)} ms, p99 ${f(l.p99)} ms, max ${f(l.max)} ms (${l.n} writes)`;

async function run(sys: GcSystem): Promise<Result> {
  console.log(`== ${sys.label}`);
  const loaded = await sys.load();
  console.log(loaded);

  /** While set, the writer waits: the bench's own churn between collections is not timed as the collector's. */
  let churn: Promise<void> | undefined;
  const writerLoop = async (writes: Write[], until: () => boolean): Promise<void> => {
    while (!until()) {
      if (churn) await churn;
      const start = performance.now();
      await sys.write();
      // Requests arrive as I/O: let the loop turn. On PGlite a write resolves through promises alone, and a loop
      // of them would starve every timer and setImmediate in the process, the collector's included. The turn is
      // part of the write's time: a request from another process waits for the loop too, so with the collector
      // in this process (Berth all-in-one) its synchronous stretches count against the writer, as they would.
      await new Promise((r) => setImmediate(r));
      writes.push({ start, end: performance.now() });
    }
  };
  const timed = async (writes: Write[]): Promise<Collection> => {
    const from = performance.now();
    const c = await sys.collect();
    return { ...c, writers: latency(within(writes, from, performance.now())) };
  };
  const describe = (name: string, c: Collection): string =>
    `${name}: longest hold ${f(c.pauseMs)} ms, total ${f(c.totalMs)} ms; image create meanwhile ${lat(c.writers)}; ${c.detail}`;

  // Baseline: the writer alone for 2 s.
  const base: Write[] = [];
  const baseEnd = Date.now() + 2_000;
  await writerLoop(base, () => Date.now() > baseEnd);
  const alone = latency(base);
  console.log(`image create alone: ${lat(alone)}`);

  // The backlog.
  let done = false;
  const backlogDelay = monitorEventLoopDelay({ resolution: 5 });
  backlogDelay.enable();
  const backlogWrites: Write[] = [];
  let during = writerLoop(backlogWrites, () => done);
  const backlog = await timed(backlogWrites);
  done = true;
  await during;
  backlogDelay.disable();
  console.log(describe('backlog collection', backlog));
  // The writer created as many images as its side let it during the backlog (containerd's took minutes): remove
  // them, so that both sides' steady collections mark the loaded shape.
  const t = performance.now();
  const pruned = await sys.removeWriterImages();
  console.log(
    `removed the writer's ${pruned} images so far (untimed, ${((performance.now() - t) / 1000).toFixed(1)} s)`,
  );

  // Steady collections, each after what a busy node leaves behind between two.
  const steadyWrites: Write[] = [];
  const steady: Collection[] = [];
  const windows: [number, number][] = [];
  const loopDelay = monitorEventLoopDelay({ resolution: 5 });
  loopDelay.enable();
  done = false;
  during = writerLoop(steadyWrites, () => done);
  for (let i = 0; i < nCollections; i++) {
    churn = sys.churn();
    await churn;
    churn = undefined;
    const from = performance.now();
    const c = await timed(steadyWrites);
    windows.push([from, performance.now()]);
    steady.push(c);
    console.log(describe(`collection ${i + 2}`, c));
  }
  done = true;
  await during;
  loopDelay.disable();
  const duringSteady = latency(steadyWrites.filter((w) => windows.some(([a, b]) => w.end > a && w.start < b)));
  const verified = await sys.verify(nCollections, steadyWrites.length);
  console.log(verified);
  const result: Result = {
    label: sys.label,
    loaded,
    alone,
    backlog,
    steady,
    steadyWriters: latency(steadyWrites),
    duringSteady,
    ...(sys.sharesEventLoop
      ? {
          eventLoop: {
            backlog: { p99: backlogDelay.percentile(99) / 1e6, max: backlogDelay.max / 1e6 },
            steady: { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
          },
        }
      : {}),
    verified,
  };
  console.log(`image create over the steady phase: ${lat(result.steadyWriters)}`);
  if (result.eventLoop)
    console.log(
      `event loop delay (collector and writer share the process, as all-in-one): during the backlog p99 ${f(result.eventLoop.backlog.p99)} ms, max ${f(result.eventLoop.backlog.max)} ms; during steady gc p99 ${f(result.eventLoop.steady.p99)} ms, max ${f(result.eventLoop.steady.max)} ms`,
    );
  return result;
}

console.log(
  `gc-pause: ${shape.images} images, ${shape.snapshots} snapshot records, ${nCollections} steady collections; load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
const pg = values['postgres-server'] && systems.includes('berth') ? await usePostgres() : undefined;
if (pg) console.log(`Postgres for the Berth side: ${JSON.stringify(pg.source)}`);
const results: Result[] = [];
for (const name of systems) {
  const sys =
    name === 'berth'
      ? await berthSystem({ ...shape, postgres: pg?.url ?? values.postgres })
      : await containerdSystem(shape);
  try {
    results.push(await run(sys));
  } finally {
    await sys.close();
  }
}

const pauses = (r: Result) => r.steady.map((c) => c.pauseMs).sort((a, b) => a - b);
const totals = (r: Result) => r.steady.map((c) => c.totalMs).sort((a, b) => a - b);
const rows: [string, (r: Result) => string][] = [
  ['image create alone, p50 / p99', (r) => `${f(r.alone.p50)} / ${f(r.alone.p99)} ms`],
  [
    'backlog collection: longest hold, total',
    (r) => `${f(r.backlog.pauseMs)} ms, ${(r.backlog.totalMs / 1000).toFixed(2)} s`,
  ],
  [
    'image create during the backlog, p50 / p99 / max',
    (r) => `${f(r.backlog.writers.p50)} / ${f(r.backlog.writers.p99)} / ${f(r.backlog.writers.max)} ms`,
  ],
  [
    'steady collections: longest hold p50 / max',
    (r) => `${f(percentile(pauses(r), 50))} / ${f(percentile(pauses(r), 100))} ms`,
  ],
  [
    'steady collections: total p50 / max',
    (r) => `${f(percentile(totals(r), 50))} / ${f(percentile(totals(r), 100))} ms`,
  ],
  [
    'image create during steady collections, p50 / p99 / max',
    (r) => `${f(r.duringSteady.p50)} / ${f(r.duringSteady.p99)} / ${f(r.duringSteady.max)} ms`,
  ],
  ['image create over the steady phase, p99', (r) => `${f(r.steadyWriters.p99)} ms`],
  [
    'other collections meanwhile (own schedule)',
    (r) => String(r.backlog.others + r.steady.reduce((a, c) => a + c.others, 0)),
  ],
];
await pg?.drop();

console.log(`\n| | ${results.map((r) => r.label).join(' | ')} |`);
console.log(`| --- | ${results.map(() => '---').join(' | ')} |`);
for (const [name, cell] of rows) console.log(`| ${name} | ${results.map(cell).join(' | ')} |`);
console.log(
  `load average at the end: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
console.log(JSON.stringify({ shape, collections: nCollections, results }));
