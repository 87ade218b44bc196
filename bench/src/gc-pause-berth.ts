/**
 * gc-pause's Berth side: metadata, content and snapshots modules and the collector in this process (all-in-one),
 * on PGlite or a Postgres server. The shape is written with SQL (records only: no blob files, no snapshot
 * directories); the writer calls the image store directly, with no gRPC hop.
 */
import { backgroundContext } from '@berth/common/context';
import { openDb } from '@berth/common/db';
import { createInProcessBus } from '@berth/common/event-bus';
import { nopLogger } from '@berth/common/log';
import { createContentModule } from '@berth/content';
import { createCollector, inProcessOwners } from '@berth/gc';
import { createMetadataModule } from '@berth/metadata';
import { createSnapshotsModule } from '@berth/snapshots';
import { tempDir } from '@berth/testing/tmp';
import { type GcSystem, imageName, type ShapeOptions } from './gc-pause-system.js';

export async function berthSystem(opts: ShapeOptions & { readonly postgres?: string | undefined }): Promise<GcSystem> {
  const { images: nImages, snapshots: nSnapshots } = opts;
  const dir = tempDir('berth-bench-gc-');
  const db = await openDb(opts.postgres ?? 'pglite://memory');
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
  let written = 0;
  let removedWriter = 0;
  let removedImage = 0;
  let nextSnapshot = nSnapshots + 10;

  return {
    label: `berth (${db.kind}, in process)`,
    sharesEventLoop: true,

    async load() {
      const t0 = Date.now();
      await db.exec(`INSERT INTO metadata.namespaces (name) VALUES ('bench') ON CONFLICT DO NOTHING`);
      // Every image its own manifest blob referencing a shared config (not stored: before 2026-12-07 its digest was
      // blob 12's, which every manifest then kept) and a snapshot; snapshots in chains of 10.
      await db.query(
        `INSERT INTO metadata.images (namespace, name, labels, target_media_type, target_digest, target_size, created_at, updated_at)
         SELECT 'bench', 'registry.test/app' || i || ':v1', '{}', 'application/vnd.oci.image.manifest.v1+json',
                'sha256:' || lpad(to_hex(i), 64, '0'), 100, now(), now() FROM generate_series(1, $1::int) i`,
        [nImages],
      );
      await db.query(
        `INSERT INTO content.blobs (namespace, digest, size, labels, created_at, updated_at)
         SELECT 'bench', 'sha256:' || lpad(to_hex(i), 64, '0'), 100,
                jsonb_build_object('containerd.io/gc.ref.content.config', 'sha256:' || repeat('c', 64),
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
      return `${nImages} images, ${nImages} manifest blobs, ${nSnapshots} snapshot records (records only) on ${db.kind}, loaded with SQL in ${((Date.now() - t0) / 1000).toFixed(1)} s`;
    },

    async write() {
      await metadata.stores.images.create(ctx, {
        name: `writer/${written++}`,
        labels: {},
        target: {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: `sha256:${'e'.repeat(64)}`,
          size: 1,
          annotations: {},
        },
      });
    },

    async removeWriterImages() {
      const from = removedWriter;
      while (removedWriter < written) await metadata.stores.images.delete(ctx, `writer/${removedWriter++}`);
      return removedWriter - from;
    },

    async churn() {
      for (let k = 0; k < 10; k++) await metadata.stores.images.delete(ctx, imageName(++removedImage));
      await db.query(
        `INSERT INTO snapshots.snapshots (id, node, snapshotter, namespace, key, kind, parent_id, labels)
         SELECT i, 'bench', 'overlayfs', 'bench', 'garbage-' || i, 'committed', CASE WHEN i = $1::int THEN NULL ELSE i - 1 END, '{}'
         FROM generate_series($1::int, $1::int + 99) i`,
        [nextSnapshot],
      );
      nextSnapshot += 100;
      // Let the notifications of the churn land (caches reload) before the collection is timed.
      await new Promise((r) => setTimeout(r, 200));
    },

    async collect() {
      const s = await collector.collect();
      return {
        pauseMs: s.pauseMs,
        totalMs: s.elapsedMs,
        others: 0,
        detail: `changed records read and marked under the lock ${s.phases.remarkMs.toFixed(1)} ms, record sweep ${s.phases.sweepMs.toFixed(1)} ms (${s.changed} records written during the mark), change point ${s.changePointMs.toFixed(1)} ms, concurrent read and mark ${s.phases.markMs.toFixed(1)} ms, removed ${JSON.stringify(s.removed)}`,
      };
    },

    async verify(collections, writes) {
      const count = async (sql: string): Promise<number> =>
        Number((await db.query<{ n: string | number }>(sql))[0]?.n ?? -1);
      const left = {
        images: await count(`SELECT count(*) AS n FROM metadata.images WHERE namespace = 'bench'`),
        blobs: await count(`SELECT count(*) AS n FROM content.blobs WHERE namespace = 'bench'`),
        snapshots: await count(`SELECT count(*) AS n FROM snapshots.snapshots WHERE namespace = 'bench'`),
      };
      const expected = {
        images: nImages - 10 * collections + writes,
        blobs: nImages - 10 * collections,
        snapshots: nSnapshots / 10,
      };
      if (JSON.stringify(left) !== JSON.stringify(expected)) {
        const stale = await db.query<{ digest: string }>(
          `SELECT digest FROM content.blobs b WHERE namespace = 'bench' AND NOT EXISTS
             (SELECT 1 FROM metadata.images i WHERE i.namespace = 'bench' AND i.target_digest = b.digest)`,
        );
        throw new Error(
          `berth: left ${JSON.stringify(left)}, expected ${JSON.stringify(expected)}; blobs no image targets: ${stale.map((r) => r.digest.replace(/^sha256:0+/, '')).join(' ')}`,
        );
      }
      return `left as expected: ${JSON.stringify(left)}`;
    },

    async close() {
      await snapshots.close();
      await content.close();
      await metadata.close();
      await db.close();
      await dir.remove();
    },
  };
}
