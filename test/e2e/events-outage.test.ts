import { type ChildProcess, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type NatsProcess, startNatsServer } from '@berth/testing/nats';
import { freePort } from '@berth/testing/ports';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr } from './src/ctr.js';

const berthMain = join(resolve(fileURLToPath(import.meta.url), '../../..'), 'apps/berth/dist/main.js');

/** A line of output and when it arrived. */
interface Arrival {
  readonly line: string;
  readonly at: number;
}

interface Watcher {
  readonly arrivals: Arrival[];
  stop(): Promise<void>;
}

/** Runs a long-lived event printer and timestamps each line of its stdout as it arrives. */
function watchProcess(cmd: string, args: readonly string[]): Watcher {
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const arrivals: Arrival[] = [];
  let buf = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      arrivals.push({ line: buf.slice(0, i), at: Date.now() });
      buf = buf.slice(i + 1);
    }
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    arrivals,
    async stop() {
      if (child.exitCode === null) child.kill('SIGINT');
      await exited;
    },
  };
}

/** `GET /v1/events` as Server-Sent Events; each `data` JSON is one arrival. */
function watchSse(url: string): Watcher {
  const ac = new AbortController();
  const arrivals: Arrival[] = [];
  void (async () => {
    const res = await fetch(url, { signal: ac.signal });
    const reader = res.body?.getReader();
    let buf = '';
    for (;;) {
      const chunk = await reader?.read();
      if (!chunk || chunk.done) return;
      buf += new TextDecoder().decode(chunk.value);
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const data = buf
          .slice(0, i)
          .split('\n')
          .find((l) => l.startsWith('data: '));
        buf = buf.slice(i + 2);
        if (data) arrivals.push({ line: data.slice(6), at: Date.now() });
      }
    }
  })().catch(() => undefined);
  return { arrivals, stop: async () => ac.abort() };
}

async function until(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The namespace a ctr-style line is about: `<time> <namespace> /namespaces/create {...}`. */
const nsOfLine = (line: string): string | undefined => / (o-\S+) \/namespaces\/create /.exec(line)?.[1];

describe('events: two nodes on one NATS stream, live subscribers across a NATS outage (real ctr events)', () => {
  let nats: NatsProcess;
  let alpha: BerthdProcess;
  let beta: BerthdProcess;
  let httpUrl: string;
  const watchers: Watcher[] = [];

  beforeAll(async () => {
    nats = await startNatsServer();
    const port = await freePort();
    httpUrl = `http://127.0.0.1:${port}`;
    const t0 = Date.now();
    // One after the other: each start has its own deadline, and a loaded machine starts two at once slowly.
    alpha = await startBerthd({ args: ['--nats', nats.url, '--node', 'alpha', '--http', `127.0.0.1:${port}`] });
    beta = await startBerthd({ args: ['--nats', nats.url, '--node', 'beta'] });
    console.info(`two berthd nodes up in ${Date.now() - t0} ms`);
  }, 150_000);
  afterAll(async () => {
    for (const w of watchers) await w.stop();
    await alpha?.stop();
    await beta?.stop();
    await nats?.dispose();
  });

  it('ctr events, berth events --node and SSE on one node see both nodes’ events, each within 2 s of NATS returning, in order, once', async () => {
    const filter = 'topic=="/namespaces/create"';
    const ctrW = watchProcess('ctr', ['--address', alpha.socket, 'events', filter]);
    const berthW = watchProcess(process.execPath, [berthMain, '--address', alpha.socket, 'events', '--node', filter]);
    const sseW = watchSse(`${httpUrl}/v1/events?filter=${encodeURIComponent(filter)}`);
    watchers.push(ctrW, berthW, sseW);
    const all = [ctrW, berthW, sseW];
    const sseNs = (a: Arrival): string => (JSON.parse(a.line) as { namespace: string }).namespace;
    const names = (w: Watcher): string[] =>
      w.arrivals.map((a) => (w === sseW ? sseNs(a) : (nsOfLine(a.line) ?? ''))).filter((n) => !n.startsWith('o-probe'));

    // A subscription starts when the server has it: create probe namespaces until every watcher shows one.
    for (let i = 0; !all.every((w) => w.arrivals.length > 0); i++) {
      if (i > 60) throw new Error('watchers never attached');
      expect((await ctr(alpha.socket, ['namespaces', 'create', `o-probe${i}`])).code).toBe(0);
      await new Promise((r) => setTimeout(r, 200));
    }

    const phase = async (name: string): Promise<string[]> => {
      const created: string[] = [];
      for (let i = 0; i < 4; i++) {
        const ns = `o-${name}${i}`;
        const r = await ctr((i % 2 ? beta : alpha).socket, ['namespaces', 'create', ns]);
        expect(r.code, r.stderr).toBe(0);
        created.push(ns);
      }
      return created;
    };
    const before = await phase('before');
    await until('the events before the outage', () => all.every((w) => names(w).length === 4), 10_000);

    await nats.stop();
    const during = await phase('during'); // berthd commits them; each node's outbox keeps them
    await new Promise((r) => setTimeout(r, 2_000));
    await nats.restart();
    const back = Date.now();
    const after = await phase('after');
    const expected = [...before, ...during, ...after];
    await until('every event at every watcher', () => all.every((w) => names(w).length >= expected.length), 15_000);
    await new Promise((r) => setTimeout(r, 500)); // room for a duplicate to show up

    // Every watcher saw each event once, in the stream's order (one order for all; each node's own in commit order).
    const seen = names(ctrW);
    expect([...seen].sort()).toEqual([...expected].sort());
    for (const w of all) expect(names(w)).toEqual(seen);
    for (const node of ['alpha', 'beta']) {
      const mine = expected.filter((_, i) => i % 2 === (node === 'alpha' ? 0 : 1));
      expect(seen.filter((n) => mine.includes(n))).toEqual(mine);
    }
    for (const [label, w] of [
      ['ctr events', ctrW],
      ['berth events', berthW],
      ['SSE', sseW],
    ] as const) {
      const late = Math.max(...w.arrivals.slice(-8).map((a) => a.at)) - back;
      console.info(`${label}: every event ${late} ms after NATS was back`);
      expect(late, label).toBeLessThan(2_000);
    }

    // Each event says which node published it: SSE `node`, berth events --node's prefix.
    const nodeOf = (ns: string): string => (expected.indexOf(ns) % 2 === 0 ? 'alpha' : 'beta');
    for (const a of sseW.arrivals) {
      const d = JSON.parse(a.line) as { namespace: string; node: string };
      if (!d.namespace.startsWith('o-probe')) expect(d.node, d.namespace).toBe(nodeOf(d.namespace));
    }
    for (const a of berthW.arrivals) {
      const ns = nsOfLine(a.line) ?? '';
      if (!ns.startsWith('o-probe')) expect(a.line.split(' ')[0], ns).toBe(nodeOf(ns));
    }
    // The line after the node is exactly ctr's.
    const ctrLine = ctrW.arrivals.find((a) => nsOfLine(a.line) === 'o-before1')?.line;
    expect(berthW.arrivals.find((a) => nsOfLine(a.line) === 'o-before1')?.line).toBe(`beta ${ctrLine}`);
  }, 90_000);
});
