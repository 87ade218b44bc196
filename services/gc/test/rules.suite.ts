import type { Db } from '@berth/common/db';
import { nopLogger } from '@berth/common/log';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollector } from '../src/collector.js';
import { inProcessOwners } from '../src/index.js';
import { tricolor } from '../src/mark/tricolor.js';
import { buildGraph, NodeType, node, normalizeNode, parseNode } from '../src/rules/graph.js';
import { gcLabels } from '../src/rules/labels.js';
import { planSweep } from '../src/rules/plan.js';
import type { Resources } from '../src/rules/resources.js';
import { alters, dgst, labelmap, startOwners } from './owners-harness.js';

const { root, contentRef, snapshotRef, expire, flat } = gcLabels;
const C = NodeType.content;
const S = NodeType.snapshot;
const L = NodeType.lease;
const I = NodeType.ingest;
const rfc3339 = (d: Date): string => `${d.toISOString().slice(0, 19)}Z`;

/**
 * containerd's metadata/gc_test.go scenarios (TestGCRoots, TestGCRemove, TestGCRefs) rebuilt over the owners'
 * tables, plus the labels containerd added after 1.6 (gc.expire on images, gc.bref.*): the same roots,
 * references, marked and removed sets, read through the owners' collectable APIs.
 */
export function rulesSuite(name: string, open: () => Promise<{ db: Db; drop(): Promise<void> }>): void {
  describe(`gc rules over ${name}`, () => {
    let db: Db;
    let drop: () => Promise<void>;
    let owners: Awaited<ReturnType<typeof startOwners>>;

    beforeAll(async () => {
      ({ db, drop } = await open());
      owners = await startOwners(db);
    });
    afterAll(async () => {
      await owners?.close();
      await drop?.();
    });

    const clear = () =>
      db.exec(`TRUNCATE metadata.lease_resources, metadata.leases, metadata.images, metadata.containers CASCADE;
               TRUNCATE content.blobs, content.ingests; TRUNCATE snapshots.snapshots CASCADE;`);
    const read = async (): Promise<Resources> => ({
      ...(await owners.parts.metadata.read(db)),
      ...(await owners.parts.content.read(db)),
      ...(await owners.parts.snapshots.read(db)),
    });
    const sorted = (xs: Iterable<string>): string[] => [...new Set(xs)].sort();

    it('finds containerd’s roots (TestGCRoots)', async () => {
      await clear();
      const now = new Date();
      const a = alters(db);
      await a.addImage('ns1', 'image1', dgst(1));
      await a.addImage('ns1', 'image2', dgst(2), labelmap(`${snapshotRef}overlay`, 'sn2'));
      await a.addImage('ns2', 'image3', dgst(10), labelmap(contentRef, dgst(11)));
      await a.addContainer('ns1', 'container1', 'overlay', 'sn4');
      await a.addContainer('ns1', 'container2', 'overlay', 'sn5', labelmap(`${snapshotRef}overlay`, 'sn6'));
      await a.addContainer(
        'ns1',
        'container3',
        'overlay',
        'sn7',
        labelmap(
          `${snapshotRef}overlay/anything-1`,
          'sn8',
          `${snapshotRef}overlay/anything-2`,
          'sn9',
          contentRef,
          dgst(7),
        ),
      );
      await a.addContainer(
        'ns1',
        'container4',
        '',
        '',
        labelmap(`${contentRef}.0`, dgst(8), `${contentRef}.1`, dgst(9)),
      );
      await a.addContent('ns1', dgst(1));
      await a.addContent('ns1', dgst(2));
      await a.addContent('ns1', dgst(3));
      await a.addContent('ns2', dgst(1));
      await a.addContent('ns2', dgst(2), labelmap(root, 'always'));
      await a.addContent('ns2', dgst(8));
      await a.addContent('ns2', dgst(9));
      await a.addIngest('ns1', 'ingest-1', '', null);
      await a.addIngest('ns1', 'ingest-2', '', now);
      await a.addIngest('ns1', 'ingest-3', '', new Date(now.getTime() + 3600_000));
      await a.addIngest('ns2', 'ingest-4', '', null);
      await a.addIngest('ns2', 'ingest-5', dgst(8), null);
      await a.addIngest('ns2', 'ingest-6', '', null);
      await a.addIngest('ns2', 'ingest-7', dgst(9), null);
      for (const sn of ['sn1', 'sn2', 'sn3', 'sn4', 'sn5', 'sn6', 'sn7', 'sn8', 'sn9'])
        await a.addSnapshot('ns1', 'overlay', sn, '', sn === 'sn3' ? labelmap(root, 'always') : {});
      await a.addLeaseSnapshot('ns2', 'l1', 'overlay', 'sn5');
      await a.addLeaseSnapshot('ns2', 'l2', 'overlay', 'sn6');
      await a.addLeaseContent('ns2', 'l1', dgst(4));
      await a.addLeaseContent('ns2', 'l2', dgst(5));
      await a.addLease('ns2', 'l3', labelmap(expire, rfc3339(new Date(now.getTime() + 3600_000))));
      await a.addLeaseContent('ns2', 'l3', dgst(6));
      await a.addLeaseSnapshot('ns2', 'l3', 'overlay', 'sn7');
      await a.addLeaseIngest('ns2', 'l3', 'ingest-4');
      await a.addLeaseIngest('ns2', 'l3', 'ingest-5');
      await a.addLease('ns2', 'l4', labelmap(expire, rfc3339(now)));
      await a.addLeaseContent('ns2', 'l4', dgst(7));
      await a.addLeaseSnapshot('ns2', 'l4', 'overlay', 'sn8');
      await a.addLeaseIngest('ns2', 'l4', 'ingest-6');
      await a.addLeaseIngest('ns2', 'l4', 'ingest-7');
      await a.addLease('ns3', 'l1', labelmap(flat, rfc3339(new Date(now.getTime() + 3600_000))));
      await a.addLeaseContent('ns3', 'l1', dgst(1));
      await a.addLeaseSnapshot('ns3', 'l1', 'overlay', 'sn1');
      await a.addLeaseIngest('ns3', 'l1', 'ingest-1');

      const expected = [
        node(C, 'ns1', dgst(1)),
        node(C, 'ns1', dgst(2)),
        node(C, 'ns1', dgst(7)),
        node(C, 'ns1', dgst(8)),
        node(C, 'ns1', dgst(9)),
        node(C, 'ns2', dgst(2)),
        node(C, 'ns2', dgst(4)),
        node(C, 'ns2', dgst(5)),
        node(C, 'ns2', dgst(6)),
        node(C, 'ns2', dgst(10)),
        node(C, 'ns2', dgst(11)),
        ...['sn2', 'sn3', 'sn4', 'sn5', 'sn6', 'sn7', 'sn8', 'sn9'].map((s) => node(S, 'ns1', `overlay/${s}`)),
        node(S, 'ns2', 'overlay/sn5'),
        node(S, 'ns2', 'overlay/sn6'),
        node(S, 'ns2', 'overlay/sn7'),
        node(L, 'ns2', 'l1'),
        node(L, 'ns2', 'l2'),
        node(L, 'ns2', 'l3'),
        node(I, 'ns1', 'ingest-3'),
        node(I, 'ns2', 'ingest-4'),
        node(I, 'ns2', 'ingest-5'),
        node(L, 'ns3', 'l1'),
        node(I, 'ns3', 'ingest-1'),
        node(NodeType.contentFlat, 'ns3', dgst(1)),
        node(NodeType.snapshotFlat, 'ns3', 'overlay/sn1'),
      ];
      const resources = await read();
      const graph = buildGraph(resources, new Date(now.getTime() + 1));
      // containerd 1.6 sends an image's and a container's references as roots; Berth's images and containers
      // are nodes themselves (as in containerd 2), so expand them one level to compare.
      const roots = graph.roots.flatMap((n) => {
        const t = parseNode(n).type;
        return t === NodeType.image || t === NodeType.container ? graph.refs(n) : [n];
      });
      expect(sorted(roots)).toEqual(sorted(expected));

      // And what a collection of this state removes, derived by hand from containerd's rules.
      const marked = tricolor(graph.roots, (n) => graph.refs(n), normalizeNode);
      const plan = planSweep(resources, marked);
      // The collector marks over the interned graph (graph.mark): the same nodes, the same plan.
      expect(sorted([...graph.mark().names()])).toEqual(sorted([...marked]));
      expect(planSweep(resources, graph.mark())).toEqual(plan);
      expect(sorted(plan.blobs.map((b) => `${b.namespace} ${b.digest}`))).toEqual(
        sorted([`ns1 ${dgst(3)}`, `ns2 ${dgst(1)}`, `ns2 ${dgst(9)}`]),
      );
      expect(plan.snapshots).toEqual([{ namespace: 'ns1', snapshotter: 'overlay', key: 'sn1' }]);
      expect(sorted(plan.ingests.map((i) => `${i.namespace} ${i.ref}`))).toEqual([
        'ns1 ingest-1',
        'ns1 ingest-2',
        'ns2 ingest-6',
        'ns2 ingest-7',
      ]);
      expect(plan.leases).toEqual([{ namespace: 'ns2', id: 'l4' }]);
      expect(plan.images).toEqual([]);
    });

    it('lists and removes every collectable record (TestGCRemove)', async () => {
      await clear();
      const a = alters(db);
      await a.addImage('ns1', 'image1', dgst(1));
      await a.addImage('ns1', 'image2', dgst(2), labelmap(`${snapshotRef}overlay`, 'sn2'));
      await a.addContainer('ns1', 'container1', 'overlay', 'sn4');
      await a.addContent('ns1', dgst(1));
      await a.addContent('ns1', dgst(2));
      await a.addContent('ns1', dgst(3));
      await a.addContent('ns2', dgst(1));
      await a.addContent('ns2', dgst(2), labelmap(root, 'always'));
      await a.addIngest('ns1', 'ingest-1', '', null);
      await a.addIngest('ns2', 'ingest-2', '', new Date());
      await a.addSnapshot('ns1', 'overlay', 'sn1', '');
      await a.addSnapshot('ns1', 'overlay', 'sn2', '');
      await a.addSnapshot('ns1', 'overlay', 'sn3', '', labelmap(root, 'always'));
      await a.addSnapshot('ns1', 'overlay', 'sn4', '');
      await a.addSnapshot('ns2', 'overlay', 'sn1', '');
      await a.addLease('ns1', 'l1', labelmap(expire, rfc3339(new Date(Date.now() + 3600_000))));
      await a.addLease('ns2', 'l2', labelmap(expire, rfc3339(new Date())));

      const all = [
        node(C, 'ns1', dgst(1)),
        node(C, 'ns1', dgst(2)),
        node(C, 'ns1', dgst(3)),
        node(C, 'ns2', dgst(1)),
        node(C, 'ns2', dgst(2)),
        node(S, 'ns1', 'overlay/sn1'),
        node(S, 'ns1', 'overlay/sn2'),
        node(S, 'ns1', 'overlay/sn3'),
        node(S, 'ns1', 'overlay/sn4'),
        node(S, 'ns2', 'overlay/sn1'),
        node(L, 'ns1', 'l1'),
        node(L, 'ns2', 'l2'),
        node(I, 'ns1', 'ingest-1'),
        node(I, 'ns2', 'ingest-2'),
      ];
      const deleted = all.filter((_, i) => i % 2 === 0);
      const remaining = all.filter((_, i) => i % 2 === 1);
      const images = [node(NodeType.image, 'ns1', 'image1'), node(NodeType.image, 'ns1', 'image2')];
      const scanAll = (r: Resources): string[] =>
        sorted(planSweep(r, new Set(images)).blobs.map((b) => node(C, b.namespace, b.digest)))
          .concat(planSweep(r, new Set(images)).snapshots.map((s) => node(S, s.namespace, `${s.snapshotter}/${s.key}`)))
          .concat(planSweep(r, new Set(images)).leases.map((l) => node(L, l.namespace, l.id)))
          .concat(planSweep(r, new Set(images)).ingests.map((i) => node(I, i.namespace, i.ref)));
      expect(sorted(scanAll(await read()))).toEqual(sorted(all));

      const plan = planSweep(await read(), new Set([...remaining, ...images]));
      await db.transaction(async (tx) => {
        await owners.parts.metadata.remove(tx, plan);
        await owners.parts.content.remove(tx, plan);
        await owners.parts.snapshots.remove(tx, plan);
      });
      const left = await read();
      expect(sorted(scanAll(left))).toEqual(sorted(remaining));
      expect(sorted(deleted).filter((n) => scanAll(left).includes(n))).toEqual([]);
      expect(left.images.map((i) => i.name).sort()).toEqual(['image1', 'image2']);
      expect(left.containers.map((c) => c.id)).toEqual(['container1']);
    });

    it('follows containerd’s references (TestGCRefs)', async () => {
      await clear();
      const a = alters(db);
      await a.addContent('ns1', dgst(1));
      await a.addContent('ns1', dgst(2));
      await a.addContent('ns1', dgst(3));
      await a.addContent('ns1', dgst(4), labelmap(contentRef, dgst(1)));
      await a.addContent(
        'ns1',
        dgst(5),
        labelmap(`${contentRef}.anything-1`, dgst(2), `${contentRef}.anything-2`, dgst(3)),
      );
      await a.addContent('ns1', dgst(6), labelmap(`${contentRef}bad`, dgst(1)));
      await a.addContent(
        'ns1',
        dgst(7),
        labelmap(`${contentRef}/anything-1`, dgst(2), `${contentRef}/anything-2`, dgst(3)),
      );
      await a.addContent('ns2', dgst(1));
      await a.addContent('ns2', dgst(2));
      await a.addIngest('ns1', 'ingest-1', '', null);
      await a.addIngest('ns2', 'ingest-2', dgst(8), null);
      await a.addSnapshot('ns1', 'overlay', 'sn1', '');
      await a.addSnapshot('ns1', 'overlay', 'sn2', 'sn1');
      await a.addSnapshot('ns1', 'overlay', 'sn3', 'sn2');
      await a.addSnapshot(
        'ns1',
        'overlay',
        'sn4',
        '',
        labelmap(`${snapshotRef}btrfs`, 'sn1', `${snapshotRef}overlay`, 'sn1'),
      );
      await a.addSnapshot(
        'ns1',
        'overlay',
        'sn5',
        '',
        labelmap(`${snapshotRef}overlay/anything-1`, 'sn1', `${snapshotRef}overlay/anything-2`, 'sn2'),
      );
      await a.addSnapshot('ns1', 'btrfs', 'sn1', '');
      await a.addSnapshot('ns2', 'overlay', 'sn1', '');
      await a.addSnapshot('ns2', 'overlay', 'sn2', 'sn1');
      await a.addSnapshot('ns2', 'overlay', 'sn3', '', labelmap(contentRef, dgst(1), `${contentRef}.keep-me`, dgst(6)));
      await a.addContent('ns3', dgst(1));
      await a.addContent('ns3', dgst(2), labelmap(`${contentRef}.0`, dgst(1)));
      await a.addSnapshot('ns3', 'overlay', 'sn1', '');
      await a.addSnapshot('ns3', 'overlay', 'sn2', 'sn1');
      await a.addSnapshot(
        'ns3',
        'overlay',
        'sn3',
        '',
        labelmap(`${snapshotRef}btrfs`, 'sn1', `${snapshotRef}overlay`, 'sn1'),
      );

      const SF = NodeType.snapshotFlat;
      const refs: Array<[string, string[]]> = [
        [node(C, 'ns1', dgst(1)), []],
        [node(C, 'ns1', dgst(2)), []],
        [node(C, 'ns1', dgst(3)), []],
        [node(C, 'ns1', dgst(4)), [node(C, 'ns1', dgst(1))]],
        [node(C, 'ns1', dgst(5)), [node(C, 'ns1', dgst(2)), node(C, 'ns1', dgst(3))]],
        [node(C, 'ns1', dgst(6)), []],
        [node(C, 'ns1', dgst(7)), [node(C, 'ns1', dgst(2)), node(C, 'ns1', dgst(3))]],
        [node(C, 'ns2', dgst(1)), []],
        [node(C, 'ns2', dgst(2)), []],
        [node(S, 'ns1', 'overlay/sn1'), []],
        [node(S, 'ns1', 'overlay/sn2'), [node(S, 'ns1', 'overlay/sn1')]],
        [node(S, 'ns1', 'overlay/sn3'), [node(S, 'ns1', 'overlay/sn2')]],
        [node(S, 'ns1', 'overlay/sn4'), [node(S, 'ns1', 'btrfs/sn1'), node(S, 'ns1', 'overlay/sn1')]],
        [node(S, 'ns1', 'overlay/sn5'), [node(S, 'ns1', 'overlay/sn1'), node(S, 'ns1', 'overlay/sn2')]],
        [node(S, 'ns1', 'btrfs/sn1'), []],
        [node(S, 'ns2', 'overlay/sn1'), []],
        [node(S, 'ns2', 'overlay/sn2'), [node(S, 'ns2', 'overlay/sn1')]],
        [node(S, 'ns2', 'overlay/sn3'), [node(C, 'ns2', dgst(1)), node(C, 'ns2', dgst(6))]],
        [node(I, 'ns1', 'ingest-1'), []],
        [node(I, 'ns2', 'ingest-2'), [node(C, 'ns2', dgst(8))]],
        [node(SF, 'ns3', 'overlay/sn2'), [node(SF, 'ns3', 'overlay/sn1')]],
        [node(S, 'ns3', 'overlay/sn2'), [node(S, 'ns3', 'overlay/sn1')]],
        [node(SF, 'ns3', 'overlay/sn1'), []],
        [node(SF, 'ns3', 'overlay/sn3'), []],
        [node(S, 'ns3', 'overlay/sn3'), [node(S, 'ns3', 'btrfs/sn1'), node(S, 'ns3', 'overlay/sn1')]],
        // Flat content is kept without its label references.
        [node(NodeType.contentFlat, 'ns3', dgst(2)), []],
        [node(C, 'ns3', dgst(2)), [node(C, 'ns3', dgst(1))]],
      ];
      const graph = buildGraph(await read(), new Date());
      for (const [n, expected] of refs) expect([n, sorted(graph.refs(n))]).toEqual([n, sorted(expected)]);
    });

    it('collects expired images and honours back references and flat leases (containerd 2 labels)', async () => {
      await clear();
      const a = alters(db);
      const past = rfc3339(new Date(Date.now() - 60_000));
      const future = rfc3339(new Date(Date.now() + 3600_000));
      await a.addImage('ns1', 'expired', dgst(1), labelmap(expire, past));
      await a.addImage('ns1', 'kept', dgst(2), labelmap(expire, future));
      await a.addContent('ns1', dgst(1));
      await a.addContent('ns1', dgst(2));
      // Kept because the blob it back-references is (the kept image's target), and not because of the expired one.
      await a.addContent('ns1', dgst(3), labelmap(`${gcLabels.contentBackRef}.sig`, dgst(2)));
      await a.addContent('ns1', dgst(4), labelmap(`${gcLabels.contentBackRef}`, dgst(1)));
      // A snapshot kept by the container it back-references.
      await a.addContainer('ns1', 'c1', '', '');
      await a.addSnapshot('ns1', 'overlay', 'by-container', '', labelmap(gcLabels.containerBackRef, 'c1'));
      await a.addSnapshot('ns1', 'overlay', 'by-nothing', '', labelmap(`${gcLabels.snapshotBackRef}overlay`, 'gone'));
      // A flat lease holds its blob, not what the blob's labels reference.
      await a.addLease('ns1', 'flat', labelmap(flat, 'true'));
      await a.addLeaseContent('ns1', 'flat', dgst(5));
      await a.addContent('ns1', dgst(5), labelmap(`${contentRef}.child`, dgst(6)));
      await a.addContent('ns1', dgst(6));

      const collector = createCollector({
        owners: inProcessOwners(db, owners.parts, { contentGraceMs: 0, deleteTimeoutMs: 5_000 }, nopLogger),
        log: nopLogger,
      });
      const stats = await collector.collect();
      const left = await read();
      expect(left.images.map((i) => i.name)).toEqual(['kept']);
      expect(sorted(left.blobs.map((b) => b.digest))).toEqual(sorted([dgst(2), dgst(3), dgst(5)]));
      expect(left.snapshots.map((s) => s.key)).toEqual(['by-container']);
      expect(stats.removed).toEqual({ leases: 0, images: 1, blobs: 3, ingests: 0, snapshots: 1 });
      await owners.metadata.flushEvents();
      await owners.snapshots.flushEvents();
    });
  });
}
