/**
 * The collector as a cluster service: three `berthd serve gc` replicas beside metadata, content and snapshots
 * served alone on one Postgres. Exactly one collects; when it is killed another takes over within 15 s.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gcClient } from '@berth/gc/client';
import { type TestPostgres, usePostgres } from '@berth/testing/postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr, tableRows } from './src/ctr.js';

const ctx = (ms = 60_000) => ({ namespace: 'gc-cluster', lease: undefined, signal: AbortSignal.timeout(ms) });

describe('berthd serve gc ×3 (cluster)', () => {
  let pg: TestPostgres;
  let dir: string;
  const owners: BerthdProcess[] = [];
  const collectors: BerthdProcess[] = [];
  let config: Record<string, unknown>;

  beforeAll(async () => {
    pg = await usePostgres();
    dir = await mkdtemp(join(tmpdir(), 'berth-gc-cluster-'));
    const sock = (n: string) => join(dir, `${n}.sock`);
    config = {
      postgres: pg.url,
      metadata: { address: `unix://${sock('metadata')}` },
      content: { address: `unix://${sock('content')}` },
      snapshots: { address: `unix://${sock('snapshots')}` },
    };
    for (const service of ['metadata', 'content', 'snapshots'])
      owners.push(await startBerthd({ role: ['serve', service], config, socket: sock(service) }));
    for (let i = 0; i < 3; i++)
      collectors.push(await startBerthd({ role: ['serve', 'gc'], config, socket: sock(`gc-${i}`) }));
  }, 180_000);
  afterAll(async () => {
    for (const p of [...collectors, ...owners]) await p.stop().catch(() => undefined);
    await pg?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const leaders = async (procs: readonly BerthdProcess[]): Promise<BerthdProcess[]> => {
    const out: BerthdProcess[] = [];
    for (const p of procs) {
      const c = gcClient(`unix://${p.socket}`);
      try {
        if ((await c.status(ctx())).leader) out.push(p);
      } catch {
        // a killed replica does not answer
      } finally {
        c.close();
      }
    }
    return out;
  };

  const garbage = async (): Promise<string> => {
    const blob = Buffer.from(`unreferenced ${Date.now()} ${Math.random()}`);
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    const r = await ctr(owners[1]?.socket ?? '', ['content', 'ingest', '--expected-digest', digest, `g-${digest}`], {
      namespace: 'gc-cluster',
      input: blob,
    });
    expect(r.code, r.stderr).toBe(0);
    return digest;
  };

  // A client of one replica: a follower's refusal is retried (a takeover may make it the leader) until the
  // call's own deadline.
  const collectOn = async (p: BerthdProcess, ms?: number) => {
    const c = gcClient(`unix://${p.socket}`);
    try {
      return await c.collect(ctx(ms));
    } finally {
      c.close();
    }
  };

  it('exactly one replica collects, and another takes over within 15 s when it is killed', async () => {
    let current: BerthdProcess[] = [];
    const deadline = Date.now() + 15_000;
    while (current.length === 0 && Date.now() < deadline) {
      current = await leaders(collectors);
      if (current.length === 0) await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 2_500)); // a few election rounds: still one
    current = await leaders(collectors);
    expect(current).toHaveLength(1);
    const leader = current[0] as BerthdProcess;

    const first = await garbage();
    const stats = await collectOn(leader);
    expect(stats.removed.blobs).toBe(1);
    const listed = await ctr(owners[1]?.socket ?? '', ['content', 'ls'], { namespace: 'gc-cluster' });
    expect(tableRows(listed.stdout).map((r) => r[0])).not.toContain(first);
    const follower = collectors.find((p) => p !== leader) as BerthdProcess;
    await expect(collectOn(follower, 2_000)).rejects.toThrow(/not the leader/);

    leader.child.kill('SIGKILL');
    const killedAt = Date.now();
    const rest = collectors.filter((p) => p !== leader);
    let next: BerthdProcess[] = [];
    while (next.length === 0 && Date.now() - killedAt < 15_000) {
      await new Promise((r) => setTimeout(r, 200));
      next = await leaders(rest);
    }
    const tookMs = Date.now() - killedAt;
    expect(next, `no replica took over within ${tookMs} ms`).toHaveLength(1);
    expect(tookMs).toBeLessThan(15_000);

    const second = await garbage();
    // The new leader's own scheduler may collect it first; either way the new leader collects and it is gone.
    expect((await collectOn(next[0] as BerthdProcess)).removed.blobs).toBeLessThanOrEqual(1);
    const after = await ctr(owners[1]?.socket ?? '', ['content', 'ls'], { namespace: 'gc-cluster' });
    expect(tableRows(after.stdout).map((r) => r[0])).not.toContain(second);
  }, 120_000);
});
