/**
 * How long a collection holds writers out, with many records: N images (each a root reaching its blobs) and
 * M snapshot records, on PGlite (all-in-one) or a Postgres server. A writer creates images back to back
 * (each takes the collection lock shared) while collections run; reported: the collection's pause and total
 * time, and the writers' latency with and without collections running.
 *
 *   pnpm --filter @berth/bench gc-pause [--images 10000] [--snapshots 50000] [--collections 5] [--postgres URL]
 *
 * The first collection sweeps a backlog (45,000 unreferenced snapshot records); before each later one, 10
 * images are removed and 100 unreferenced snapshot records appear, as on a busy node.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { backgroundContext } from '@berth/common/context';
import { openDb } from '@berth/common/db';
import { createInProcessBus } from '@berth/common/event-bus';
import { nopLogger } from '@berth/common/log';
import { createContentModule } from '@berth/content';
import { createCollector, inProcessOwners } from '@berth/gc';
import { createMetadataModule } from '@berth/metadata';
import { createSnapshotsModule } from '@berth/snapshots';
import { tempDir } from '@berth/testing/tmp';
import { percentile } from './stats.js';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '10000' },
    snapshots: { type: 'string', default: '50000' },
    collections: { type: 'string', default: '5' },
    postgres: { type: 'string' },
  },
});
const nImages = Number(values.images);
const nSnapshots = Number(values.snapshots);
const dir = tempDir('berth-bench-gc-');
const db = await openDb(values.postgres ?? 'pglite://memory');
const bus = createInProcessBus();
const metadata = await createMetadataModule({ db, bus, log: nopLogger });
const content = await createContentModule({
  db,
  bus,
  log: nopLogger,
  backend: { kind: 'fs', root: `${dir.path}/content` },
});
const snapshots = await createSnapshotsModule({
  db,
  bus,
  log: nopLogger,
  root: `${dir.path}/snapshots`,
  node: 'bench',
});

const t0 = Date.now();
await db.exec(`INSERT INTO metadata.namespaces (name) VALUES ('bench') ON CONFLICT DO NOTHING`);
// Every image its own manifest blob referencing a shared config and layer; snapshots in chains of 10.
await db.query(
  `INSERT INTO metadata.images (namespace, name, labels, target_media_type, target_digest, target_size, created_at, updated_at)
   SELECT 'bench', 'registry.test/app' || i || ':v1', '{}', 'application/vnd.oci.image.manifest.v1+json',
          'sha256:' || lpad(to_hex(i), 64, '0'), 100, now(), now() FROM generate_series(1, $1::int) i`,
  [nImages],
);
await db.query(
  `INSERT INTO content.blobs (namespace, digest, size, labels, created_at, updated_at)
   SELECT 'bench', 'sha256:' || lpad(to_hex(i), 64, '0'), 100,
          jsonb_build_object('containerd.io/gc.ref.content.config', 'sha256:' || lpad('c', 64, '0'),
                             'containerd.io/gc.ref.snapshot.overlayfs', 'chain-' || (i % ($2::int / 10))),
          now(), now() FROM generate_series(1, $1::int) i`,
  [nImages, nSnapshots],
);
await db.query(
  `INSERT INTO snapshots.snapshots (id, node, snapshotter, namespace, key, kind, parent_id, labels)
   SELECT i, 'bench', 'overlayfs', 'bench', 'chain-' || i, 'committed', CASE WHEN i % 10 = 0 THEN NULL ELSE i - 1 END, '{}'
   FROM generate_series(0, $1::int - 1) i`,
  [nSnapshots],
);
await db.exec(`SELECT setval(pg_get_serial_sequence('snapshots.snapshots', 'id'), ${nSnapshots + 1})`);
console.log(
  `${nImages} images, ${nImages} manifest blobs, ${nSnapshots} snapshot records on ${db.kind} (loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s)`,
);

const collector = createCollector({
  owners: inProcessOwners(
    db,
    {
      metadata: metadata.collectable,
      content: content.collectable,
      snapshots: snapshots.collectable,
      node: { name: 'bench', reconcile: () => snapshots.reconcile() },
    },
    { contentGraceMs: 0, deleteTimeoutMs: 30_000 },
    nopLogger,
  ),
  log: nopLogger,
});

const ctx = backgroundContext(nopLogger, 'bench');
let n = 0;
const write = async (): Promise<number> => {
  const t = performance.now();
  await metadata.stores.images.create(ctx, {
    name: `writer/${n++}`,
    labels: {},
    target: {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: `sha256:${'e'.repeat(64)}`,
      size: 1,
      annotations: {},
    },
  });
  return performance.now() - t;
};
/** While set, the writer waits: the bench's own churn between collections is not timed as the collector's. */
let churn: Promise<void> | undefined;
const writerLoop = async (until: () => boolean): Promise<number[]> => {
  const lat: number[] = [];
  while (!until()) {
    if (churn) await churn;
    lat.push(await write());
    // Requests arrive as I/O: let the loop turn. On PGlite a write resolves through promises alone, and a loop
    // of them would starve every timer and setImmediate in the process, the collector's included.
    await new Promise((r) => setImmediate(r));
  }
  return lat;
};

// Baseline: writers alone for 2 s.
const baseEnd = Date.now() + 2_000;
const base = await writerLoop(() => Date.now() > baseEnd);
const p = (xs: number[], q: number) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    q,
  ).toFixed(1);
const describe = (i: number, s: Awaited<ReturnType<typeof collector.collect>>): string =>
  `collection ${i}: longest pause ${s.pauseMs.toFixed(1)} ms (in all: changed records read and marked ${s.phases.remarkMs.toFixed(1)} ms, record sweep ${s.phases.sweepMs.toFixed(1)} ms; ${s.changed} records written during the mark), change point ${s.changePointMs.toFixed(1)} ms, concurrent read and mark ${s.phases.markMs.toFixed(1)} ms, total ${s.elapsedMs.toFixed(1)} ms, removed ${JSON.stringify(s.removed)}`;

// The backlog: the first collection finds 45,000 unreferenced snapshot records (removed in batches).
let done = false;
let during = writerLoop(() => done);
const first = await collector.collect();
done = true;
const duringFirst = await during;
console.log(describe(1, first));

// Steady state: before each collection, what a busy node leaves behind between two: 10 images removed (their
// manifests become garbage) and a chain of 100 snapshot records nothing references.
const pauses: number[] = [];
const totals: number[] = [];
let removedImage = 0;
let nextSnapshot = nSnapshots + 10;
done = false;
const loopDelay = monitorEventLoopDelay({ resolution: 5 });
loopDelay.enable();
during = writerLoop(() => done);
for (let i = 0; i < Number(values.collections); i++) {
  churn = (async () => {
    for (let k = 0; k < 10; k++) await metadata.stores.images.delete(ctx, `registry.test/app${++removedImage}:v1`);
    await db.query(
      `INSERT INTO snapshots.snapshots (id, node, snapshotter, namespace, key, kind, parent_id, labels)
       SELECT i, 'bench', 'overlayfs', 'bench', 'garbage-' || i, 'committed', CASE WHEN i = $1::int THEN NULL ELSE i - 1 END, '{}'
       FROM generate_series($1::int, $1::int + 99) i`,
      [nextSnapshot],
    );
    nextSnapshot += 100;
    // Let the notifications of the churn land (caches reload) before the collection is timed.
    await new Promise((r) => setTimeout(r, 200));
  })();
  await churn;
  churn = undefined;
  const s = await collector.collect();
  pauses.push(s.pauseMs);
  totals.push(s.elapsedMs);
  console.log(describe(i + 2, s));
}
done = true;
const withGc = await during;
loopDelay.disable();
console.log(
  `backlog collection: longest pause ${first.pauseMs.toFixed(1)} ms, total ${first.elapsedMs.toFixed(1)} ms; image create meanwhile p50 ${p(duringFirst, 50)} ms, p99 ${p(duringFirst, 99)} ms, max ${p(duringFirst, 100)} ms (${duringFirst.length} writes)`,
);
console.log(
  `steady collections: pause p50 ${p(pauses, 50)} ms, max ${p(pauses, 100)} ms; total p50 ${p(totals, 50)} ms`,
);
console.log(`image create alone:           p50 ${p(base, 50)} ms, p99 ${p(base, 99)} ms (${base.length} writes)`);
console.log(
  `image create during steady gc: p50 ${p(withGc, 50)} ms, p99 ${p(withGc, 99)} ms, max ${p(withGc, 100)} ms (${withGc.length} writes)`,
);
console.log(
  `event loop delay during steady gc (collector and writers share the process, as all-in-one): p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} ms, max ${(loopDelay.max / 1e6).toFixed(1)} ms`,
);
await snapshots.close();
await content.close();
await metadata.close();
await db.close();
await dir.remove();
