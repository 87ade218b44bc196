import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backgroundContext, type RequestContext } from '@berth/common/context';
import { type Db, openDb } from '@berth/common/db';
import { codeOf } from '@berth/common/errors';
import { createInProcessBus, type EventBus, type StoredEvent } from '@berth/common/event-bus';
import { nopLogger } from '@berth/common/log';
import { spreadsSubdirectories } from '@berth/common/spread-dirs';
import { SnapshotCommit, SnapshotPrepare, SnapshotRemove } from '@berth/proto/containerd/events/snapshot';
import { type TestPostgres, usePostgres } from '@berth/testing/postgres';
import { type TempDir, tempDir } from '@berth/testing/tmp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSnapshotsModule, type SnapshotsModule } from '../src/index.js';
import type { Mount, Snapshotter } from '../src/snapshots/types.js';

const ctxIn = (namespace: string, lease?: string): RequestContext => ({
  ...backgroundContext(nopLogger, namespace),
  lease,
});

/** Mounts `mounts` (as ctr or a runtime would) at a fresh dir, runs fn, unmounts. */
async function withMounted<T>(mounts: readonly Mount[], fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp('/tmp/berth-mnt-');
  const [m] = mounts;
  if (!m || mounts.length !== 1) throw new Error(`expected one mount, got ${mounts.length}`);
  const options = m.type === 'bind' ? ['bind', ...m.options.filter((o) => o !== 'rbind')] : [...m.options];
  execFileSync('mount', ['-t', m.type, m.source, dir, '-o', options.join(',')]);
  try {
    return await fn(dir);
  } finally {
    execFileSync('umount', [dir]);
    await rm(dir, { recursive: true });
  }
}

async function expectCode(p: Promise<unknown>, code: string, message?: string): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `expected ${code}`).toBeDefined();
  expect(codeOf(e)).toBe(code);
  if (message !== undefined) expect((e as Error).message).toBe(message);
}

function suite(label: string, dbUrl: () => Promise<{ url: string; drop(): Promise<void> }>): void {
  describe(`snapshotters on ${label}`, () => {
    let dbh: { url: string; drop(): Promise<void> };
    let db: Db;
    let bus: EventBus;
    let tmp: TempDir;
    let mod: SnapshotsModule;
    let overlay: Snapshotter;
    let native: Snapshotter;

    beforeAll(async () => {
      dbh = await dbUrl();
      db = await openDb(dbh.url);
      bus = createInProcessBus();
      tmp = tempDir('berth-snap-');
      mod = await createSnapshotsModule({ db, bus, log: nopLogger, root: join(tmp.path, 'snapshots'), node: 'node-a' });
      const o = mod.snapshotters.get('overlayfs');
      const n = mod.snapshotters.get('native');
      if (!o || !n) throw new Error('snapshotters missing');
      overlay = o;
      native = n;
    });
    afterAll(async () => {
      await mod?.close();
      await bus?.close();
      await db?.close();
      await dbh?.drop();
      await tmp?.remove();
    });

    it("spreads each snapshot's tree over the file system (ext4's Orlov allocator, chattr +T)", () => {
      expect(spreadsSubdirectories(join(tmp.path, 'snapshots', 'overlayfs'))).toBe(true);
      expect(spreadsSubdirectories(join(tmp.path, 'snapshots', 'native'))).toBe(true);
    });

    it('overlayfs: base is a bind mount, children overlay their parents, and files flow up the chain', async () => {
      const ctx = ctxIn('default');
      const base = await overlay.prepare(ctx, 'base-active', '', {});
      expect(base).toHaveLength(1);
      expect(base[0]?.type).toBe('bind');
      expect(base[0]?.options).toEqual(['rw', 'rbind']);
      await withMounted(base, async (dir) => writeFile(join(dir, 'a.txt'), 'layer a'));
      await overlay.commit(ctx, 'layer-a', 'base-active', { 'x/y': 'z' });

      const child = await overlay.prepare(ctx, 'child-active', 'layer-a', {});
      const [m] = child;
      expect(m?.type).toBe('overlay');
      expect(m?.options).toContain('index=off');
      const lower = m?.options.find((o) => o.startsWith('lowerdir='));
      expect(lower).toMatch(/^lowerdir=\/.*\/overlayfs\/\d+\/fs$/);
      expect(m?.options.some((o) => o.startsWith('upperdir='))).toBe(true);
      expect(m?.options.some((o) => o.startsWith('workdir='))).toBe(true);
      await withMounted(child, async (dir) => {
        expect(await readFile(join(dir, 'a.txt'), 'utf8')).toBe('layer a');
        await writeFile(join(dir, 'b.txt'), 'layer b');
      });
      await overlay.commit(ctx, 'layer-b', 'child-active', {});

      // A view of one parent is that parent's directory, read-only; of two, a lower-only overlay.
      const v1 = await overlay.view(ctx, 'view-1', 'layer-a', {});
      expect(v1[0]?.type).toBe('bind');
      expect(v1[0]?.options).toEqual(['ro', 'rbind']);
      const v2 = await overlay.view(ctx, 'view-2', 'layer-b', {});
      expect(v2[0]?.type).toBe('overlay');
      expect(v2[0]?.options.filter((o) => o.startsWith('upperdir='))).toEqual([]);
      const lowers = v2[0]?.options
        .find((o) => o.startsWith('lowerdir='))
        ?.slice('lowerdir='.length)
        .split(':');
      expect(lowers).toHaveLength(2);
      await withMounted(v2, async (dir) => {
        expect((await readdir(dir)).sort()).toEqual(['a.txt', 'b.txt']);
        expect(await readFile(join(dir, 'b.txt'), 'utf8')).toBe('layer b');
      });
      expect(await overlay.mounts(ctx, 'view-2')).toEqual(v2);

      const info = await overlay.stat(ctx, 'layer-b');
      expect(info).toMatchObject({ name: 'layer-b', parent: 'layer-a', kind: 'committed', labels: {} });
      expect((await overlay.stat(ctx, 'layer-a')).labels).toEqual({ 'x/y': 'z' });
      expect((await overlay.stat(ctx, 'view-1')).kind).toBe('view');

      const usage = await overlay.usage(ctx, 'layer-b');
      expect(usage.inodes).toBe(2); // the fs dir and b.txt
      expect(usage.size).toBeGreaterThan(0);
    });

    it('returns containerd errors with containerd messages and changes nothing', async () => {
      const ctx = ctxIn('errs');
      await overlay.prepare(ctx, 'k1', '', {});
      await expectCode(overlay.prepare(ctx, 'k1', '', {}), 'already_exists', 'snapshot "k1": already exists');
      await expectCode(overlay.stat(ctx, 'nope'), 'not_found', 'snapshot nope does not exist: not found');
      await expectCode(
        overlay.prepare(ctx, 'k2', 'nope', {}),
        'not_found',
        'parent snapshot nope does not exist: not found',
      );
      await expectCode(overlay.prepare(ctx, 'k2', 'k1', {}), 'invalid_argument');
      await expectCode(overlay.mounts(ctx, 'nope'), 'not_found');
      await overlay.commit(ctx, 'c1', 'k1', {});
      await expectCode(overlay.commit(ctx, 'c2', 'c1', {}), 'failed_precondition');
      await expectCode(overlay.mounts(ctx, 'c1'), 'failed_precondition');
      await overlay.prepare(ctx, 'k3', 'c1', {});
      await expectCode(overlay.commit(ctx, 'c1', 'k3', {}), 'already_exists', 'snapshot "c1": already exists');
      await expectCode(
        overlay.remove(ctx, 'c1'),
        'failed_precondition',
        'cannot remove snapshot with child: failed precondition',
      );
      await expectCode(overlay.remove(ctx, 'nope'), 'not_found', 'snapshot nope does not exist: not found');
      await expectCode(
        overlay.prepare(ctxIn(''), 'x', '', {}),
        'failed_precondition',
        'namespace is required: failed precondition',
      );
      await expectCode(overlay.prepare(ctx, 'big', '', { k: 'v'.repeat(5000) }), 'invalid_argument');
      await expectCode(overlay.update(ctx, { name: 'c1', labels: {} }, ['parent']), 'invalid_argument');
      expect((await overlay.list(ctx, [])).map((i) => `${i.name}:${i.kind}`)).toEqual(['c1:committed', 'k3:active']);

      await overlay.remove(ctx, 'k3');
      await overlay.remove(ctx, 'c1');
      expect(await overlay.list(ctx, [])).toEqual([]);
    });

    it('keeps keys private to their namespace', async () => {
      const a = ctxIn('ns-a');
      const b = ctxIn('ns-b');
      await overlay.prepare(a, 'same', '', {});
      await overlay.prepare(b, 'same', '', {});
      await overlay.commit(a, 'same-c', 'same', {});
      expect((await overlay.stat(a, 'same-c')).kind).toBe('committed');
      await expectCode(overlay.stat(b, 'same-c'), 'not_found');
      expect((await overlay.stat(b, 'same')).kind).toBe('active');
      await expectCode(overlay.prepare(b, 'child', 'same-c', {}), 'not_found');
      expect(await mod.namespaceUsage.resourcesIn(a, 'ns-a')).toEqual(['snapshots on "overlayfs" snapshotter']);
      expect(await mod.namespaceUsage.resourcesIn(a, 'ns-none')).toEqual([]);
    });

    it('lists with containerd filters and updates labels by field paths', async () => {
      const ctx = ctxIn('filters');
      await overlay.prepare(ctx, 'f-base', '', { team: 'a' });
      await overlay.commit(ctx, 'f-c', 'f-base', { team: 'a', tier: 'gold' });
      await overlay.prepare(ctx, 'f-child', 'f-c', { team: 'b' });
      await overlay.view(ctx, 'f-view', 'f-c', {});
      const names = async (f: string[]): Promise<string[]> => (await overlay.list(ctx, f)).map((i) => i.name);
      expect(await names([])).toEqual(['f-c', 'f-child', 'f-view']);
      expect(await names(['kind==committed'])).toEqual(['f-c']);
      expect(await names(['kind==view', 'kind==active'])).toEqual(['f-child', 'f-view']);
      expect(await names(['parent==f-c'])).toEqual(['f-child', 'f-view']);
      expect(await names(['parent==""'])).toEqual(['f-c']);
      expect(await names(['labels.team==b'])).toEqual(['f-child']);
      expect(await names(['labels.tier'])).toEqual(['f-c']);
      expect(await names(['name~=^f-c'])).toEqual(['f-c', 'f-child']);
      await expectCode(overlay.list(ctx, ['kind==']), 'invalid_argument');

      let info = await overlay.update(ctx, { name: 'f-c', labels: { tier: 'silver', extra: 'x' } }, ['labels.tier']);
      expect(info.labels).toEqual({ team: 'a', tier: 'silver' });
      info = await overlay.update(ctx, { name: 'f-c', labels: {} }, ['labels.team']);
      expect(info.labels).toEqual({ tier: 'silver' });
      info = await overlay.update(ctx, { name: 'f-c', labels: { only: '1' } }, []);
      expect(info.labels).toEqual({ only: '1' });
      expect(info.updatedAt.getTime()).toBeGreaterThanOrEqual(info.createdAt.getTime());
      expect((await overlay.stat(ctx, 'f-c')).labels).toEqual({ only: '1' });
    });

    it('native: children are full copies of their parent, bind-mounted', async () => {
      const ctx = ctxIn('default');
      const base = await native.prepare(ctx, 'n-base', '', {});
      expect(base).toEqual([
        { type: 'bind', source: expect.stringMatching(/\/native\/\d+$/), options: ['rbind', 'rw'] },
      ]);
      const baseDir = base[0]?.source ?? '';
      await mkdir(join(baseDir, 'etc'));
      await writeFile(join(baseDir, 'etc', 'hostname'), 'n1');
      await native.commit(ctx, 'n-layer', 'n-base', {});
      const child = await native.prepare(ctx, 'n-child', 'n-layer', {});
      const childDir = child[0]?.source ?? '';
      expect(childDir).not.toBe(baseDir);
      expect(await readFile(join(childDir, 'etc', 'hostname'), 'utf8')).toBe('n1');
      const view = await native.view(ctx, 'n-view', 'n-layer', {});
      expect(view).toEqual([{ type: 'bind', source: baseDir, options: ['rbind', 'ro'] }]);
      const u = await native.usage(ctx, 'n-child');
      expect(u.inodes).toBe(3);
      await native.remove(ctx, 'n-child');
      await native.idle();
      expect(existsSync(childDir)).toBe(false);
    });

    it('publishes /snapshot/prepare, /snapshot/commit and /snapshot/remove through the outbox', async () => {
      const ctx = ctxIn('evts');
      const abort = new AbortController();
      const seen: StoredEvent[] = [];
      const reading = (async () => {
        for await (const e of bus.subscribe({ from: { kind: 'all' }, namespace: 'evts', signal: abort.signal })) {
          seen.push(e);
          if (seen.length === 3) break;
        }
      })();
      await overlay.prepare(ctx, 'e-key', '', {});
      await overlay.view(ctx, 'e-view', '', {});
      await overlay.commit(ctx, 'e-name', 'e-key', {});
      await overlay.remove(ctx, 'e-name');
      await mod.flushEvents();
      await reading;
      abort.abort();
      expect(seen.map((e) => [e.topic, e.event.typeUrl])).toEqual([
        ['/snapshot/prepare', 'containerd.events.SnapshotPrepare'],
        ['/snapshot/commit', 'containerd.events.SnapshotCommit'],
        ['/snapshot/remove', 'containerd.events.SnapshotRemove'],
      ]);
      expect(SnapshotPrepare.decode(seen[0]?.event.value ?? new Uint8Array())).toEqual({ key: 'e-key', parent: '' });
      expect(SnapshotCommit.decode(seen[1]?.event.value ?? new Uint8Array())).toEqual({ key: 'e-key', name: 'e-name' });
      expect(SnapshotRemove.decode(seen[2]?.event.value ?? new Uint8Array())).toEqual({ key: 'e-name' });
    });

    it('removes a snapshot directory with its record; cleanup removes orphaned directories only', async () => {
      const ctx = ctxIn('gc');
      const [m] = await overlay.prepare(ctx, 'gc-keep', '', {});
      const keepDir = join(m?.source ?? '', '..');
      const orphan = join(tmp.path, 'snapshots', 'overlayfs', '999999');
      await mkdir(join(orphan, 'fs'), { recursive: true });
      await overlay.cleanup(ctx);
      expect(existsSync(orphan)).toBe(false);
      expect((await stat(keepDir)).isDirectory()).toBe(true);
      await overlay.remove(ctx, 'gc-keep');
      await expectCode(overlay.stat(ctx, 'gc-keep'), 'not_found');
      await overlay.idle();
      expect(existsSync(keepDir)).toBe(false);
    });

    it('gives long parent chains short lowerdir entries, nearest parent first', async () => {
      const ctx = ctxIn('chain');
      let parent = '';
      for (let i = 0; i < 40; i++) {
        await overlay.prepare(ctx, `active-${i}`, parent, {});
        await overlay.commit(ctx, `layer-${i}`, `active-${i}`, {});
        parent = `layer-${i}`;
      }
      const [m] = await overlay.view(ctx, 'top', parent, {});
      const lowers =
        m?.options
          .find((o) => o.startsWith('lowerdir='))
          ?.slice('lowerdir='.length)
          .split(':') ?? [];
      expect(lowers).toHaveLength(40);
      const lowersOf = async (name: string): Promise<string[]> => {
        const [v] = await overlay.view(ctx, `v-${name}`, name, {});
        return (
          v?.options
            .find((o) => o.startsWith('lowerdir='))
            ?.slice('lowerdir='.length)
            .split(':') ?? []
        );
      };
      expect(lowers.slice(1)).toEqual(await lowersOf('layer-38'));
      const [bottom] = await overlay.view(ctx, 'v-bottom', 'layer-0', {});
      expect(lowers[39]).toBe(bottom?.source);
      expect(Math.max(...lowers.map((l) => l.length))).toBeLessThan(tmp.path.length + 40);
    });

    it('reads records from memory, and a restarted service finds every record it wrote', async () => {
      const ctx = ctxIn('restart');
      await overlay.prepare(ctx, 'r-base', '', {});
      await overlay.commit(ctx, 'r-layer', 'r-base', { a: 'b' });
      await overlay.prepare(ctx, 'r-active', 'r-layer', {});
      await overlay.view(ctx, 'r-view', 'r-layer', {});
      await overlay.update(ctx, { name: 'r-view', labels: { v: '1' } }, ['labels.v']);
      await overlay.prepare(ctx, 'r-gone', '', {});
      await overlay.remove(ctx, 'r-gone');
      const before = {
        list: await overlay.list(ctx, []),
        mounts: await overlay.mounts(ctx, 'r-active'),
        view: await overlay.mounts(ctx, 'r-view'),
      };
      expect(before.list.map((i) => `${i.name}<${i.parent}:${i.kind}:${JSON.stringify(i.labels)}`)).toEqual([
        'r-active<r-layer:active:{}',
        'r-layer<:committed:{"a":"b"}',
        'r-view<r-layer:view:{"v":"1"}',
      ]);

      // Memory, not the database: a row changed behind the service's back is not seen until it restarts.
      await db.query(
        `UPDATE snapshots.snapshots SET labels = '{"sneaky":"1"}' WHERE namespace = 'restart' AND key = 'r-layer'`,
      );
      expect((await overlay.stat(ctx, 'r-layer')).labels).toEqual({ a: 'b' });
      await db.query(
        `UPDATE snapshots.snapshots SET labels = '{"a":"b"}' WHERE namespace = 'restart' AND key = 'r-layer'`,
      );

      const again = await createSnapshotsModule({
        db,
        bus,
        log: nopLogger,
        root: join(tmp.path, 'snapshots'),
        node: 'node-a',
      });
      try {
        const o = again.snapshotters.get('overlayfs');
        if (!o) throw new Error('overlayfs missing');
        expect(await o.list(ctx, [])).toEqual(before.list);
        expect(await o.mounts(ctx, 'r-active')).toEqual(before.mounts);
        expect(await o.mounts(ctx, 'r-view')).toEqual(before.view);
        await expectCode(o.stat(ctx, 'r-gone'), 'not_found');
        await expectCode(o.remove(ctx, 'r-layer'), 'failed_precondition');
      } finally {
        await again.close();
      }
    });

    it("another node's snapshots are invisible here; asking for their mounts names the node that holds them", async () => {
      const ctx = ctxIn('two-nodes');
      await overlay.prepare(ctx, 'on-a', '', {});
      const b = await createSnapshotsModule({
        db,
        bus,
        log: nopLogger,
        root: join(tmp.path, 'snapshots-b'),
        node: 'uuid-of-b',
        nodeName: 'b',
      });
      try {
        const ob = b.snapshotters.get('overlayfs');
        if (!ob) throw new Error('overlayfs missing');
        expect(await ob.list(ctx, [])).toEqual([]);
        await expectCode(ob.stat(ctx, 'on-a'), 'not_found');
        await expectCode(
          ob.mounts(ctx, 'on-a'),
          'failed_precondition',
          "snapshot on-a is on node node-a, not on this node (b): use that node's socket: failed precondition",
        );
        await expectCode(ob.mounts(ctx, 'nowhere'), 'not_found', 'snapshot nowhere does not exist: not found');
      } finally {
        await b.close();
      }
    });

    it('refuses to remove a parent whose child was committed behind the index (foreign key)', async () => {
      const ctx = ctxIn('fk');
      await overlay.prepare(ctx, 'fk-base', '', {});
      await overlay.commit(ctx, 'fk-layer', 'fk-base', {});
      // A child row the index has not seen, as if written by a racing transaction.
      await db.query(
        `INSERT INTO snapshots.snapshots (node, snapshotter, namespace, key, kind, parent_id)
         SELECT node, snapshotter, namespace, 'fk-child', 'active', id FROM snapshots.snapshots
         WHERE namespace = 'fk' AND key = 'fk-layer'`,
      );
      await expectCode(
        overlay.remove(ctx, 'fk-layer'),
        'failed_precondition',
        'cannot remove snapshot with child: failed precondition',
      );
      expect((await overlay.stat(ctx, 'fk-layer')).kind).toBe('committed');
      await db.query(`DELETE FROM snapshots.snapshots WHERE namespace = 'fk' AND key = 'fk-child'`);
      await overlay.remove(ctx, 'fk-layer');
      await expectCode(overlay.stat(ctx, 'fk-layer'), 'not_found');
    });
  });
}

suite('PGlite', async () => ({ url: 'pglite://memory', drop: async () => undefined }));
suite('Postgres', async (): Promise<TestPostgres> => usePostgres());
