import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { collectableRegistration } from '@berth/common/collectable';
import { backgroundContext } from '@berth/common/context';
import { type Db, openDb } from '@berth/common/db';
import { createServer, listen } from '@berth/common/grpc-server';
import { nopLogger } from '@berth/common/log';
import type { ServiceModule } from '@berth/common/service';
import { createSnapshotsModule } from '@berth/snapshots';
import { type TestPostgres, usePostgres } from '@berth/testing/postgres';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollector } from '../src/collector.js';
import { type Election, remoteOwners, startElection } from '../src/index.js';
import { alters, dgst, startOwners } from './owners-harness.js';

async function until(ok: () => boolean, ms: number): Promise<number> {
  const start = Date.now();
  while (!ok()) {
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - start;
}

/**
 * A collector in its own process: it sweeps through the owners' Collectable APIs, each removal fenced by the
 * leader's database session. A leader whose session ended cannot commit a sweep; another replica takes over.
 */
describe('gc leader election and fencing (PostgreSQL)', () => {
  let pg: TestPostgres;
  let db: Db;
  let owners: Awaited<ReturnType<typeof startOwners>>;
  let admin: postgres.Sql;
  const elections: Election[] = [];
  const closers: Array<() => Promise<void>> = [];
  const addresses = { metadata: '', content: '', snapshots: '' };
  const servers: Partial<Record<keyof typeof addresses, { close(): Promise<void> }>> = {};

  /** Serves `m`'s Collectable part on its own socket, as an owner served alone does. */
  const serve = async (name: keyof typeof addresses, m: ServiceModule): Promise<void> => {
    const server = createServer();
    if (!m.collectable) throw new Error(`${name} has no collectable part`);
    const r = collectableRegistration(db, m.collectable, nopLogger);
    server.addService(r.definition, r.implementation);
    const bound = await listen(server, join(owners.dir.path, `${name}-collectable.sock`));
    addresses[name] = bound.address;
    servers[name] = bound;
  };

  beforeAll(async () => {
    pg = await usePostgres();
    db = await openDb(pg.url);
    owners = await startOwners(db);
    admin = postgres(pg.url, { max: 1, onnotice: () => undefined });
    await serve('metadata', owners.metadata);
    await serve('content', owners.content);
    await serve('snapshots', owners.snapshots);
    closers.push(async () => {
      for (const s of Object.values(servers)) await s.close();
    });
  });
  afterAll(async () => {
    for (const e of elections) await e.close();
    for (const c of closers) await c();
    await admin?.end({ timeout: 5 });
    await owners?.close();
    await db?.close();
    await pg?.drop();
  });

  const replica = (): Election => {
    const e = startElection({ url: pg.url, log: nopLogger, pollMs: 200 });
    elections.push(e);
    return e;
  };

  it('elects exactly one leader, which collects through the owners; a replica takes over when its session dies', async () => {
    const [a, b, c] = [replica(), replica(), replica()];
    await until(() => [a, b, c].some((e) => e.isLeader()), 15_000);
    await new Promise((r) => setTimeout(r, 600));
    expect([a, b, c].filter((e) => e.isLeader())).toHaveLength(1);
    const leader = [a, b, c].find((e) => e.isLeader()) as Election;

    await alters(db).addContent('fenced', dgst(1));
    const collect = (e: Election) =>
      createCollector({
        owners: remoteOwners(e, addresses, { contentGraceMs: 0, deleteTimeoutMs: 5_000 }, nopLogger, db),
        log: nopLogger,
      }).collect();
    expect((await collect(leader)).removed.blobs).toBe(1);
    const follower = [a, b, c].find((e) => !e.isLeader()) as Election;
    await expect(collect(follower)).rejects.toThrow(/not the leader/);

    // The leader's database session ends (crash, partition): the lock goes with it and a replica takes it,
    // on a session of its own (the old leader may win again, but only on a new session).
    const pid = leader.session();
    await admin`SELECT pg_terminate_backend(${pid ?? 0})`;
    const took = await until(() => [a, b, c].some((e) => e.isLeader() && e.session() !== pid), 15_000);
    expect(took).toBeLessThan(15_000);
    const next = [a, b, c].find((e) => e.isLeader() && e.session() !== pid) as Election;
    await alters(db).addContent('fenced', dgst(2));
    expect((await collect(next)).removed.blobs).toBe(1);
  });

  it('returns once each running node whose snapshots it removed freed their directories; a node not running is skipped, and frees its own when it starts', async () => {
    await until(() => elections.some((x) => x.isLeader()), 15_000);
    const leader = elections.find((x) => x.isLeader()) as Election;
    const bg = backgroundContext(nopLogger, 'sweep');
    // A committed snapshot of this node with a tree that takes a while to remove, referenced by nothing.
    const ss = owners.snapshots.snapshotters.get('native');
    if (!ss) throw new Error('native snapshotter missing');
    const [mount] = await ss.prepare(bg, 'big-active', '', {});
    const tree = mount?.source ?? '';
    for (let d = 0; d < 30; d++) {
      await mkdir(join(tree, `d${d}`));
      await Promise.all(Array.from({ length: 100 }, (_, f) => writeFile(join(tree, `d${d}`, `f${f}`), 'x')));
    }
    await ss.commit(bg, 'big', 'big-active', {});
    // One of another node, which is not running (its service closed): nobody answers for it.
    const startOther = () =>
      createSnapshotsModule({ db, bus: owners.bus, log: nopLogger, root: join(owners.dir.path, 'n2'), node: 'n2' });
    const other = await startOther();
    const [elsewhere] = (await other.snapshotters.get('native')?.prepare(bg, 'elsewhere', '', {})) ?? [];
    await other.close();
    const t0 = Date.now();
    const stats = await createCollector({
      owners: remoteOwners(leader, addresses, { contentGraceMs: 0, deleteTimeoutMs: 10_000 }, nopLogger, db),
      log: nopLogger,
    }).collect();
    expect(stats.snapshots).toEqual({ nodes: ['n1'], skipped: ['n2'] });
    expect(existsSync(tree)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(8_000);
    // The node that was down frees its directories when it starts.
    expect(existsSync(elsewhere?.source ?? '')).toBe(true);
    await (await startOther()).close();
    expect(existsSync(elsewhere?.source ?? '')).toBe(false);
  });

  it('waits for an owner that is restarting: a collection started while its socket is gone completes once it is back', async () => {
    await until(() => elections.some((x) => x.isLeader()), 15_000);
    const leader = elections.find((x) => x.isLeader()) as Election;
    await alters(db).addContent('fenced', dgst(4));
    // The node's snapshots owner goes away (its socket with it), as a node container being restarted.
    await servers.snapshots?.close();
    const remote = remoteOwners(leader, addresses, { contentGraceMs: 0, deleteTimeoutMs: 5_000 }, nopLogger, db);
    const collection = createCollector({ owners: remote, log: nopLogger }).collect();
    await new Promise((r) => setTimeout(r, 1_000));
    await serve('snapshots', owners.snapshots);
    expect((await collection).removed.blobs).toBe(1);
    remote.close();
  });

  it('refuses the sweep of a collector whose session ended after it marked (deposed leader)', async () => {
    await until(() => elections.some((x) => x.isLeader()), 15_000);
    const leader = elections.find((x) => x.isLeader()) as Election;
    await alters(db).addContent('fenced', dgst(3));
    const remote = remoteOwners(leader, addresses, { contentGraceMs: 0, deleteTimeoutMs: 5_000 }, nopLogger, db);
    let removal: Promise<unknown> | undefined;
    const all = await remote.readAll();
    const attempt = remote.exclusive(async (s) => {
      const unmarked = all.blobs.filter((b) => b.namespace === 'fenced' && b.digest === dgst(3));
      expect(unmarked.map((b) => b.digest)).toEqual([dgst(3)]);
      // Deposed between its mark and its sweep: its session, and the collection lock, are gone.
      const pid = leader.session() ?? 0;
      await admin`SELECT pg_terminate_backend(${pid})`;
      // pg_terminate_backend only signals: wait until the session is really gone (and its locks with it).
      for (let i = 0; i < 100; i++) {
        const alive = await admin`SELECT 1 FROM pg_stat_activity WHERE pid = ${pid}`;
        if (alive.length === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      removal = s.removeContent({ blobs: unmarked, ingests: [] });
      return removal;
    });
    // The transaction fails with its connection; the owner refuses the removal on its own.
    expect(await attempt.then(() => 'committed', String)).not.toBe('committed');
    await until(() => removal !== undefined, 10_000);
    expect(await (removal as Promise<unknown>).then(() => 'removed', String)).toMatch(
      /no longer holds the collection lock/,
    );
    const left = await db.query<{ digest: string }>("SELECT digest FROM content.blobs WHERE namespace = 'fenced'");
    expect(left.map((r) => r.digest)).toContain(dgst(3));
    remote.close();
  });
});
