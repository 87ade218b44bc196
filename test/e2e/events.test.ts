import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type TestNats, useNats } from '@berth/testing/nats';
import { freePort } from '@berth/testing/ports';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr } from './src/ctr.js';

const berthMain = join(resolve(fileURLToPath(import.meta.url), '../../..'), 'apps/berth/dist/main.js');

/** `<timestamp> <namespace> <topic> <json>` as ctr events prints it (Go time.Time.String() in UTC). */
const lineRe = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \+0000 UTC) (\S+) (\S+) (.*)$/;

interface Watcher {
  readonly child: ChildProcess;
  lines(): string[];
  stderr(): string;
  waitFor(pred: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/** Spawns a long-running event printer (ctr events, berth events) and collects its stdout lines. */
function watch(cmd: string, args: readonly string[]): Watcher {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const lines = (): string[] => out.split('\n').filter((l) => l !== '');
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    lines,
    stderr: () => err,
    async waitFor(pred, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = lines().find(pred);
        if (hit !== undefined) return hit;
        if (child.exitCode !== null) throw new Error(`${cmd} exited with ${child.exitCode}: ${err}`);
        if (Date.now() > deadline)
          throw new Error(`${cmd}: no matching line within ${timeoutMs} ms; got:\n${out}\nstderr: ${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGINT');
      await exited;
    },
  };
}

/**
 * A subscription starts when the server has it, which a client cannot observe; create throwaway
 * namespaces until the watcher prints one, so later assertions do not race the subscription.
 */
async function attached(socket: string, w: Watcher, tag: string, opts: { viaDelete?: boolean } = {}): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const probe = `probe-${tag}-${i}`;
    expect((await ctr(socket, ['namespaces', 'create', probe])).code).toBe(0);
    if (opts.viaDelete) expect((await ctr(socket, ['namespaces', 'rm', probe])).code).toBe(0);
    const topic = opts.viaDelete ? 'delete' : 'create';
    try {
      await w.waitFor((l) => l.includes(`/namespaces/${topic} {"name":"${probe}"}`), 300);
      return;
    } catch {
      /* not attached yet */
    }
  }
  throw new Error(`watcher never attached: ${w.stderr()}`);
}

function parse(line: string): { ts: string; ns: string; topic: string; json: unknown } {
  const m = lineRe.exec(line);
  if (!m) throw new Error(`not a ctr events line: ${line}`);
  return { ts: m[1] ?? '', ns: m[2] ?? '', topic: m[3] ?? '', json: JSON.parse(m[4] ?? 'null') };
}

describe('events: real ctr events against berthd (all-in-one)', () => {
  let d: BerthdProcess;
  let httpUrl: string;
  const watchers: Watcher[] = [];

  beforeAll(async () => {
    const port = await freePort();
    httpUrl = `http://127.0.0.1:${port}`;
    d = await startBerthd({ args: ['--http', `127.0.0.1:${port}`] });
  });
  afterAll(async () => {
    for (const w of watchers) await w.stop();
    await d.stop();
  });

  it('ctr events shows, live, the namespace events happening in another shell', async () => {
    const all = watch('ctr', ['--address', d.socket, 'events']);
    const deletes = watch('ctr', ['--address', d.socket, 'events', 'topic=="/namespaces/delete"']);
    watchers.push(all, deletes);
    await attached(d.socket, all, 'a');
    await attached(d.socket, deletes, 'b', { viaDelete: true });

    expect((await ctr(d.socket, ['namespaces', 'create', 'shell2', 'team=blue'])).code).toBe(0);
    expect((await ctr(d.socket, ['namespaces', 'label', 'shell2', 'team=red'])).code).toBe(0);
    expect((await ctr(d.socket, ['namespaces', 'rm', 'shell2'])).code).toBe(0);

    const created = parse(await all.waitFor((l) => l.includes(' shell2 /namespaces/create ')));
    expect(created.json).toEqual({ name: 'shell2', labels: { team: 'blue' } });
    expect(Math.abs(Date.parse(created.ts.replace(' +0000 UTC', 'Z').replace(' ', 'T')) - Date.now())).toBeLessThan(
      60_000,
    );
    const updated = parse(await all.waitFor((l) => l.includes(' shell2 /namespaces/update ')));
    expect(updated.json).toEqual({ name: 'shell2', labels: { team: 'red' } });
    const deleted = parse(await all.waitFor((l) => l.includes(' shell2 /namespaces/delete ')));
    expect(deleted.json).toEqual({ name: 'shell2' });
    // In order, once each.
    const mine = all.lines().filter((l) => l.includes(' shell2 '));
    expect(mine.map((l) => parse(l).topic)).toEqual(['/namespaces/create', '/namespaces/update', '/namespaces/delete']);

    // The filtered ctr saw the delete and nothing else.
    await deletes.waitFor((l) => l.includes(' shell2 /namespaces/delete {"name":"shell2"}'));
    expect(deletes.lines().every((l) => parse(l).topic === '/namespaces/delete')).toBe(true);
    expect(all.stderr()).toBe('');
  });

  it('ctr events rejects a malformed filter with containerd wording', async () => {
    const r = await ctr(d.socket, ['events', 'topic=='], { timeoutMs: 10_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('failed parsing subscription filters: filters: parse error');
  });

  it('berth events prints the same lines as ctr events, live and replayed by sequence or time', async () => {
    const before = new Date(Date.now() - 1);
    const live = watch(process.execPath, [berthMain, '--address', d.socket, 'events']);
    const ctrLive = watch('ctr', ['--address', d.socket, 'events']);
    watchers.push(live, ctrLive);
    await attached(d.socket, live, 'c');
    await attached(d.socket, ctrLive, 'd');
    expect((await ctr(d.socket, ['namespaces', 'create', 'cli1', 'k=v'])).code).toBe(0);
    const mine = await live.waitFor((l) => l.includes(' cli1 /namespaces/create '));
    const theirs = await ctrLive.waitFor((l) => l.includes(' cli1 /namespaces/create '));
    expect(mine).toBe(theirs);
    expect(parse(mine).json).toEqual({ name: 'cli1', labels: { k: 'v' } });

    // Replay: everything since `before`, with sequence numbers, ends only when interrupted.
    const replay = watch(process.execPath, [
      berthMain,
      '--address',
      d.socket,
      'events',
      '--since',
      before.toISOString(),
      '--seq',
      'namespace==cli1',
    ]);
    watchers.push(replay);
    const withSeq = await replay.waitFor((l) => l.includes('/namespaces/create'));
    const m = /^(\d+) (.*)$/.exec(withSeq);
    expect(m?.[2]).toBe(theirs);
    const seq = Number(m?.[1]);
    expect(seq).toBeGreaterThan(0);

    const fromSeq = watch(process.execPath, [berthMain, '--address', d.socket, 'events', '--from-seq', String(seq)]);
    watchers.push(fromSeq);
    expect(await fromSeq.waitFor(() => true)).toBe(theirs);
    await fromSeq.stop();
    expect(fromSeq.child.exitCode).toBe(0);
  });

  it('the SSE endpoint on the ops server streams the same events and resumes with Last-Event-ID', async () => {
    expect((await ctr(d.socket, ['namespaces', 'create', 'sse1'])).code).toBe(0);
    expect((await ctr(d.socket, ['namespaces', 'rm', 'sse1'])).code).toBe(0);
    const ac = new AbortController();
    const res = await fetch(`${httpUrl}/v1/events?from-seq=1&filter=${encodeURIComponent('namespace==sse1')}`, {
      signal: ac.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body?.getReader();
    if (!reader) throw new Error('no body');
    let text = '';
    while (!text.includes('/namespaces/delete')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    ac.abort();
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((x) => Number(x[1]));
    expect(ids).toHaveLength(2);
    expect(text).toContain('"event":{"name":"sse1"}');

    const resumed = new AbortController();
    const res2 = await fetch(`${httpUrl}/v1/events?filter=${encodeURIComponent('namespace==sse1')}`, {
      headers: { 'last-event-id': String(ids[0]) },
      signal: resumed.signal,
    });
    const r2 = res2.body?.getReader();
    let text2 = '';
    while (!text2.includes('/namespaces/delete')) {
      const chunk = await r2?.read();
      if (!chunk || chunk.done) break;
      text2 += new TextDecoder().decode(chunk.value);
    }
    resumed.abort();
    expect([...text2.matchAll(/^id: (\d+)$/gm)].map((x) => Number(x[1]))).toEqual([ids[1]]);
  });
});

describe('events: cluster mode (serve events + serve metadata on NATS JetStream, gateway in front)', () => {
  let nats: TestNats;
  let dir: string;
  const procs: BerthdProcess[] = [];
  let gateway: BerthdProcess;

  beforeAll(async () => {
    nats = await useNats();
    dir = await mkdtemp(join(tmpdir(), 'berth-e2e-events-'));
    const config = {
      nats: nats.url,
      metadata: { address: `unix://${join(dir, 'metadata.sock')}` },
      events: { address: `unix://${join(dir, 'events.sock')}` },
    };
    procs.push(await startBerthd({ role: ['serve', 'events'], config, socket: join(dir, 'events.sock') }));
    procs.push(await startBerthd({ role: ['serve', 'metadata'], config, socket: join(dir, 'metadata.sock') }));
    gateway = await startBerthd({ role: ['serve', 'gateway'], config, socket: join(dir, 'berth.sock') });
    procs.push(gateway);
  });
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
    await nats.stop();
  });

  it('ctr events through the gateway sees what metadata publishes via its outbox and JetStream', async () => {
    const w = watch('ctr', ['--address', gateway.socket, 'events', 'topic~="^/namespaces/"']);
    try {
      await attached(gateway.socket, w, 'cl');
      expect((await ctr(gateway.socket, ['namespaces', 'create', 'cluster1'])).code).toBe(0);
      const line = parse(await w.waitFor((l) => l.includes(' cluster1 /namespaces/create ')));
      expect(line.json).toEqual({ name: 'cluster1' });
    } finally {
      await w.stop();
    }
  });

  it('serve events refuses to start without NATS', async () => {
    await expect(startBerthd({ role: ['serve', 'events'], socket: join(dir, 'lonely.sock') })).rejects.toThrow(
      /serve events needs --nats/,
    );
  });
});
