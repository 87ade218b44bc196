import { createHash } from 'node:crypto';
import { connectNode } from '@berth/client';
import { backgroundContext, viewOf } from '@berth/common/context';
import type { Db } from '@berth/common/db';
import { nopLogger } from '@berth/common/log';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Collector, createCollector } from '../src/collector.js';
import { inProcessOwners } from '../src/index.js';
import { gcLabels } from '../src/rules/labels.js';
import { alters, dgst, startOwners } from './owners-harness.js';

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/**
 * The collector never races a writer: collections forced at the moments a writer is most exposed (between
 * each of its calls to metadata, between a Stat and the Prepare built on it) remove nothing it relies on.
 * Each test fails when the protection it names is removed.
 */
export function racesSuite(name: string, open: () => Promise<{ db: Db; drop(): Promise<void> }>): void {
  describe(`gc never races a writer, over ${name}`, () => {
    let db: Db;
    let drop: () => Promise<void>;
    let owners: Awaited<ReturnType<typeof startOwners>>;
    let collector: Collector;
    let forcing = false;
    let forced = 0;

    beforeAll(async () => {
      ({ db, drop } = await open());
      owners = await startOwners(db, {
        around: async () => {
          if (!forcing) return;
          forced++;
          await collector.collect();
        },
      });
      collector = createCollector({
        owners: inProcessOwners(db, owners.parts, { contentGraceMs: 0, deleteTimeoutMs: 5_000 }, nopLogger),
        log: nopLogger,
      });
    });
    afterAll(async () => {
      forcing = false;
      await owners?.close();
      await drop?.();
    });

    const blobs = async (ns: string): Promise<string[]> =>
      (await owners.parts.content.read(db)).blobs.filter((b) => b.namespace === ns).map((b) => b.digest);

    it('a blob written under a lease survives a collection at every step, and its label keeps it after (containerd #8570)', async () => {
      const ns = 'race-content';
      const bg = backgroundContext(nopLogger, ns);
      await owners.metadata.stores.leases.create(bg, 'pull', {});
      const node = connectNode(owners.address);
      const blob = Buffer.from(`committed under a lease ${Date.now()}`);
      const digest = digestOf(blob);
      forcing = true;
      forced = 0;
      try {
        const r = await node.content.ingest(
          { namespace: ns, lease: 'pull', signal: new AbortController().signal },
          { open: async (offset) => ({ start: offset, body: [blob.subarray(offset)] }) },
          { ref: 'race-ref', desc: { mediaType: 'application/octet-stream', digest, size: blob.length } },
        );
        expect(r.state).toBe('written');
      } finally {
        forcing = false;
      }
      // Collections ran at the writer's lease calls: opening (ingest), before commit (content), after (ingest gone).
      expect(forced).toBeGreaterThanOrEqual(4);
      expect(await blobs(ns)).toEqual([digest]);

      // Ingested, then labelled: a collection between the two steps, under the lease, keeps it.
      await collector.collect();
      expect(await blobs(ns)).toEqual([digest]);
      await node.content.updateLabels(
        { namespace: ns, lease: undefined, signal: AbortSignal.timeout(10_000) },
        digest,
        {
          [gcLabels.root]: 'kept',
        },
      );
      await owners.metadata.stores.leases.delete(bg, 'pull');
      await collector.collect();
      expect(await blobs(ns)).toEqual([digest]);
      node.close();
    });

    it('a snapshot found by Stat under a lease stays for the child prepared on it (containerd #3787, #10723)', async () => {
      const ns = 'race-snapshots';
      const bg = backgroundContext(nopLogger, ns);
      const ss = owners.snapshots.snapshotters.get('native');
      if (!ss) throw new Error('native snapshotter missing');
      // A committed chain left by a pull whose image was removed: nothing references it any more.
      await ss.prepare(bg, 'base-active', '', {});
      await ss.commit(bg, 'base', 'base-active', {});
      await owners.metadata.stores.leases.create(bg, 'retry', {});
      const leased = viewOf(bg, ns, 'retry');

      expect((await ss.stat(leased, 'base')).name).toBe('base');
      await collector.collect(); // back to back with the retried pull, between its Stat and its Prepare
      await ss.prepare(leased, 'child-active', 'base', {});
      await ss.commit(leased, 'child', 'child-active', {});

      // Released, the chain goes, child first; its parent is removable again once the child went (#11908).
      await owners.metadata.stores.leases.delete(bg, 'retry');
      await ss.prepare(bg, 'loose-active', '', {});
      await ss.commit(bg, 'loose', 'loose-active', {});
      await ss.prepare(bg, 'loose-child', 'loose', {});
      await owners.metadata.stores.leases.create(bg, 'hold-parent', {});
      await owners.metadata.stores.leases.addResource(bg, 'hold-parent', { id: 'loose', type: 'snapshots/native' });
      const stats = await collector.collect();
      expect(stats.removed.snapshots).toBe(3); // base, child, loose-child
      expect((await ss.list(bg, [])).map((i) => i.name)).toEqual(['loose']);
      await ss.remove(bg, 'loose');
      expect(await ss.list(bg, [])).toEqual([]);
    });

    it('records written while the collector marks (outside the lock) keep what they reference', async () => {
      const ns = 'race-window';
      const bg = backgroundContext(nopLogger, ns);
      const ss = owners.snapshots.snapshotters.get('native');
      if (!ss) throw new Error('native snapshotter missing');
      const put = alters(db);
      // Unreferenced when the collector reads: each is referenced by a write made during its mark.
      await owners.metadata.stores.leases.create(bg, 'window', {});
      await owners.metadata.stores.leases.create(bg, 'holder', {});
      for (const i of [1, 2, 3, 4, 5]) await put.addContent(ns, dgst(1000 + i));
      await owners.metadata.stores.leases.addResource(bg, 'holder', { id: dgst(1003), type: 'content' });
      await ss.prepare(bg, 'parent-active', '', {});
      await ss.commit(bg, 'parent', 'parent-active', {});
      await ss.prepare(bg, 'lone-active', '', {});
      await ss.commit(bg, 'lone', 'lone-active', {});

      const base = inProcessOwners(db, owners.parts, { contentGraceMs: 0, deleteTimeoutMs: 5_000 }, nopLogger);
      let wrote = false;
      const windowed = createCollector({
        owners: {
          ...base,
          async readAll() {
            const read = await base.readAll();
            // The mark runs on `read`; these writers go on meanwhile, as they do not wait for a mark.
            await owners.metadata.stores.leases.addResource(bg, 'window', { id: dgst(1001), type: 'content' });
            await owners.metadata.stores.images.create(bg, {
              name: 'window/image:latest',
              labels: {},
              target: {
                mediaType: 'application/vnd.oci.image.manifest.v1+json',
                digest: dgst(1002),
                size: 1,
                annotations: {},
              },
            });
            // A leased blob labelled to reference another (the content-then-label pull step, #8570).
            await db.query(
              `UPDATE content.blobs SET labels = labels || $3::text::jsonb WHERE namespace = $1 AND digest = $2`,
              [ns, dgst(1003), JSON.stringify({ 'containerd.io/gc.ref.content.l.0': dgst(1004) })],
            );
            await ss.prepare(viewOf(bg, ns, 'window'), 'child-active', 'parent', {});
            wrote = true;
            return read;
          },
        },
        log: nopLogger,
      });
      const stats = await windowed.collect();
      expect(wrote).toBe(true);
      expect(stats.changed).toBeGreaterThanOrEqual(4); // the lease (with its new resource), the image, the blob, the snapshot
      // Only what nothing references went: the fifth blob and the lone snapshot.
      expect((await blobs(ns)).sort()).toEqual([dgst(1001), dgst(1002), dgst(1003), dgst(1004)].sort());
      expect((await ss.list(bg, [])).map((i) => i.name).sort()).toEqual(['child-active', 'parent']);
      expect(stats.removed.blobs).toBeGreaterThanOrEqual(1);

      await owners.metadata.stores.images.delete(bg, 'window/image:latest');
      for (const l of ['window', 'holder']) await owners.metadata.stores.leases.delete(bg, l);
      await collector.collect();
      expect(await blobs(ns)).toEqual([]);
    });

    it('a backlog swept in several short pauses keeps what a writer references between them', async () => {
      const ns = 'race-batches';
      const bg = backgroundContext(nopLogger, ns);
      const ss = owners.snapshots.snapshotters.get('native');
      if (!ss) throw new Error('native snapshotter missing');
      const put = alters(db);
      await owners.metadata.stores.leases.create(bg, 'late', {});
      for (const i of [1, 2, 3, 4, 5]) await put.addContent(ns, dgst(2000 + i));
      // An unreferenced chain s0 <- s1 <- … <- s9: children must go before their parents, batch by batch.
      for (let i = 0; i < 10; i++) {
        await ss.prepare(bg, `s${i}-active`, i === 0 ? '' : `s${i - 1}`, {});
        await ss.commit(bg, `s${i}`, `s${i}-active`, {});
      }
      const base = inProcessOwners(db, owners.parts, { contentGraceMs: 0, deleteTimeoutMs: 5_000 }, nopLogger);
      let rounds = 0;
      const batched = createCollector({
        owners: {
          ...base,
          async exclusive(fn) {
            const r = await base.exclusive(fn);
            // Between two pauses, a writer takes a lease on a snapshot in the middle of the chain.
            if (++rounds === 2)
              await owners.metadata.stores.leases.addResource(bg, 'late', { id: 's2', type: 'snapshots/native' });
            return r;
          },
        },
        log: nopLogger,
        removalsPerPause: 3,
      });
      const stats = await batched.collect();
      expect(rounds).toBeGreaterThanOrEqual(4);
      expect(await blobs(ns)).toEqual([]);
      expect((await ss.list(bg, [])).map((i) => i.name).sort()).toEqual(['s0', 's1', 's2']);
      expect(stats.removed.snapshots).toBe(7);
      expect(stats.removed.blobs).toBe(5);

      await owners.metadata.stores.leases.delete(bg, 'late');
      await collector.collect();
      expect(await ss.list(bg, [])).toEqual([]);
    });

    it('collections back to back during 20 concurrent writers under leases fail none of them', async () => {
      const ns = 'race-many';
      const bg = backgroundContext(nopLogger, ns);
      const ss = owners.snapshots.snapshotters.get('native');
      if (!ss) throw new Error('native snapshotter missing');
      const node = connectNode(owners.address);
      let stop = false;
      let collections = 0;
      const loop = (async () => {
        while (!stop) {
          await collector.collect();
          collections++;
        }
      })();
      try {
        const results = await Promise.allSettled(
          Array.from({ length: 20 }, async (_, i) => {
            const lease = `writer-${i}`;
            await owners.metadata.stores.leases.create(bg, lease, {});
            const ctx = viewOf(bg, ns, lease);
            const layer = Buffer.from(`layer of writer ${i % 5}`); // shared blobs, as pulls of one image share layers
            const digest = digestOf(layer);
            await node.content.ingest(
              { namespace: ns, lease, signal: new AbortController().signal },
              { open: async (offset) => ({ start: offset, body: [layer.subarray(offset)] }) },
              { ref: `layer-${digest}`, desc: { mediaType: 'application/octet-stream', digest, size: layer.length } },
            );
            const chain = `chain-${i % 5}`;
            let found = false;
            try {
              await ss.stat(ctx, chain);
              found = true;
            } catch {
              found = false;
            }
            if (!found) {
              const key = `extract-${i}-${chain}`;
              await ss.prepare(ctx, key, '', {});
              try {
                await ss.commit(ctx, chain, key, {});
              } catch (e) {
                // Another writer committed the same chain first, as in containerd's unpack.
                if (!String(e).includes('already exists')) throw e;
                await ss.remove(ctx, key);
              }
            }
            await ss.prepare(ctx, `rootfs-${i}`, chain, {});
            const info = await ss.stat(ctx, `rootfs-${i}`);
            expect(info.parent).toBe(chain);
            expect(await blobs(ns)).toContain(digest);
          }),
        );
        const failed = results.filter((r) => r.status === 'rejected');
        expect(failed.map((f) => String((f as PromiseRejectedResult).reason))).toEqual([]);
      } finally {
        stop = true;
        await loop;
        node.close();
      }
      expect(collections).toBeGreaterThan(0);
    });
  });
}
