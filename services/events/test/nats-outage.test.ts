import { type IncomingMessage, request } from 'node:http';
import { type Db, openDb } from '@berth/common/db';
import type { EventBus } from '@berth/common/event-bus';
import { createServer, listen } from '@berth/common/grpc-server';
import { createOpsServer } from '@berth/common/http-server';
import { nopLogger } from '@berth/common/log';
import { createNatsBus } from '@berth/common/nats-event-bus';
import { enqueue, type OutboxRelay, outboxTableSql, startOutboxRelay } from '@berth/common/outbox';
import { registerAll, type ServiceModule } from '@berth/common/service';
import { NamespaceCreate } from '@berth/proto/containerd/events/namespace';
import { type Envelope, EventsClient } from '@berth/proto/containerd/services/events/v1/events';
import { type NatsProcess, startNatsServer } from '@berth/testing/nats';
import * as grpc from '@grpc/grpc-js';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createEventsModule } from '../src/index.js';

/** What a live subscriber saw: each event's name and when it arrived. */
interface Arrival {
  readonly name: string;
  readonly at: number;
}

interface Watcher {
  readonly arrivals: Arrival[];
  stop(): void;
}

const ns = 'outage';

/** containerd's Events.Subscribe over gRPC, as `ctr events` calls it. */
function grpcWatcher(address: string): Watcher {
  const client = new EventsClient(address, grpc.credentials.createInsecure());
  const arrivals: Arrival[] = [];
  const call = client.subscribe({ filters: [`namespace==${ns}`] });
  call.on('data', (e: Envelope) => {
    arrivals.push({ name: NamespaceCreate.decode(e.event?.value ?? new Uint8Array()).name, at: Date.now() });
  });
  call.on('error', () => undefined);
  return {
    arrivals,
    stop: () => {
      call.cancel();
      client.close();
    },
  };
}

/** `GET /v1/events` read as Server-Sent Events. */
function sseWatcher(base: string): Watcher {
  const arrivals: Arrival[] = [];
  const req = request(`${base}/v1/events?filter=${encodeURIComponent(`namespace==${ns}`)}`, (res: IncomingMessage) => {
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buf += chunk;
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const data = buf
          .slice(0, i)
          .split('\n')
          .find((l) => l.startsWith('data: '));
        buf = buf.slice(i + 2);
        if (data)
          arrivals.push({
            name: (JSON.parse(data.slice(6)) as { event: { name: string } }).event.name,
            at: Date.now(),
          });
      }
    });
  });
  req.on('error', () => undefined);
  req.end();
  return { arrivals, stop: () => req.destroy() };
}

async function until(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('live subscribers across a NATS outage (events module on a private nats-server)', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  // One PGlite for the file (its start is the costliest part of a rig); each rig has an outbox schema of its own.
  let db: Db;
  let rigs = 0;
  beforeAll(async () => {
    db = await openDb('pglite://memory');
  });
  afterAll(async () => {
    await db.close();
  });
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  interface Rig {
    readonly nats: NatsProcess;
    readonly relay: OutboxRelay;
    readonly watchers: Watcher[];
    /** Commits an event to the outbox, as a service's change would. */
    commit(name: string): Promise<void>;
  }

  const rig = async (): Promise<Rig> => {
    const nats = await startNatsServer();
    cleanup.push(() => nats.dispose());
    const bus: EventBus = await createNatsBus({ url: nats.url, log: nopLogger, node: 'node-a' });
    cleanup.push(() => bus.close());
    const module: ServiceModule = await createEventsModule({ bus, log: nopLogger });
    cleanup.push(() => module.close?.());
    const server = createServer();
    registerAll(server, [module]);
    const bound = await listen(server, '127.0.0.1:0');
    cleanup.push(() => bound.close(100));
    const ops = createOpsServer({ log: nopLogger, service: 'events' });
    module.http?.(ops.app, ops.registry);
    const base = await ops.listen('127.0.0.1:0');
    cleanup.push(() => ops.close());

    const schema = `t${++rigs}`;
    await db.exec(`CREATE SCHEMA ${schema}; ${outboxTableSql(schema)}`);
    const relay = startOutboxRelay({ db, schema, bus, log: nopLogger });
    cleanup.push(() => relay.close());
    const commit = async (name: string): Promise<void> => {
      await db.transaction((tx) =>
        enqueue(tx, schema, {
          namespace: ns,
          topic: '/namespaces/create',
          typeUrl: 'containerd.events.NamespaceCreate',
          payload: NamespaceCreate.encode({ name, labels: {} }).finish(),
        }),
      );
      relay.kick();
    };

    const watchers = [grpcWatcher(bound.address), sseWatcher(base)];
    for (const w of watchers) cleanup.push(() => w.stop());
    // A subscription starts when the server has it: commit probes until both watchers show one.
    for (let i = 0; !watchers.every((w) => w.arrivals.length > 0); i++) {
      if (i > 100) throw new Error('subscribers never attached');
      await commit(`probe-${i}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return { nats, relay, watchers, commit };
  };

  for (const how of ['stop', 'kill'] as const) {
    it(`every event reaches gRPC and SSE subscribers within 2 s of NATS returning, in order, once (${how})`, async () => {
      const r = await rig();
      const names = (prefix: string): string[] => Array.from({ length: 5 }, (_, i) => `${prefix}${i}`);
      for (const n of names('before')) await r.commit(n);
      await until(
        'the events before the outage',
        () => r.watchers.every((w) => w.arrivals.some((a) => a.name === 'before4')),
        5_000,
      );

      await r.nats[how]();
      for (const n of names('during')) await r.commit(n); // the outbox keeps them
      await new Promise((res) => setTimeout(res, 3_000));
      await r.nats.restart();
      const back = Date.now();
      for (const n of names('after')) await r.commit(n);

      const expected = [...names('before'), ...names('during'), ...names('after')];
      await until(
        'every event at every subscriber',
        () => r.watchers.every((w) => w.arrivals.some((a) => a.name === 'after4')),
        10_000,
      );
      await new Promise((res) => setTimeout(res, 300)); // room for a duplicate to show up
      for (const [i, w] of r.watchers.entries()) {
        const seen = w.arrivals.filter((a) => !a.name.startsWith('probe-'));
        expect(
          seen.map((a) => a.name),
          `watcher ${i}`,
        ).toEqual(expected);
        const late = Math.max(...seen.slice(5).map((a) => a.at)) - back;
        console.info(`${how}: watcher ${i} had every event ${late} ms after NATS was back`);
        expect(late, `watcher ${i}`).toBeLessThan(2_000);
      }
    }, 120_000); // a loaded machine starts the servers slowly; the bound that matters is the 2 s above
  }

  it('a subscriber that had received nothing before the outage gets only what is new, not the stream from its start', async () => {
    const nats = await startNatsServer();
    cleanup.push(() => nats.dispose());
    const bus = await createNatsBus({ url: nats.url, log: nopLogger, stream: 'QUIET', node: 'node-a' });
    cleanup.push(() => bus.close());
    const publish = (body: string): Promise<void> =>
      bus.publish({
        timestamp: new Date(),
        namespace: 'quiet',
        topic: '/t',
        event: {
          typeUrl: 'containerd.events.NamespaceCreate',
          value: NamespaceCreate.encode({ name: body, labels: {} }).finish(),
        },
      });
    for (const body of ['old0', 'old1', 'old2']) await publish(body);

    const ac = new AbortController();
    cleanup.push(() => ac.abort());
    const got: string[] = [];
    void (async () => {
      for await (const e of bus.subscribe({ from: { kind: 'new' }, namespace: 'quiet', signal: ac.signal }))
        got.push(NamespaceCreate.decode(e.event.value).name);
    })();
    // Attached once its consumer exists on the server.
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      for (let i = 0; (await jsm.consumers.list('QUIET').next()).length === 0; i++) {
        if (i > 100) throw new Error('the subscription never created its consumer');
        await new Promise((res) => setTimeout(res, 50));
      }
    } finally {
      await nc.close();
    }

    await nats.kill();
    await nats.restart();
    // The bus refuses to publish until it has reconnected; retry as the outbox relay would.
    for (let i = 0; ; i++) {
      try {
        await publish('new0');
        break;
      } catch (e) {
        if (i > 100) throw e;
        await new Promise((res) => setTimeout(res, 50));
      }
    }
    await until('the new event', () => got.length > 0, 5_000);
    await new Promise((res) => setTimeout(res, 300));
    expect(got).toEqual(['new0']);
  });

  it('a subscription whose consumer is deleted under it carries on at once, without loss or repeats', async () => {
    const nats = await startNatsServer();
    cleanup.push(() => nats.dispose());
    const bus = await createNatsBus({ url: nats.url, log: nopLogger, stream: 'GONE', node: 'node-a' });
    cleanup.push(() => bus.close());
    const publish = (body: string): Promise<void> =>
      bus.publish({
        timestamp: new Date(),
        namespace: 'gone',
        topic: '/t',
        event: {
          typeUrl: 'containerd.events.NamespaceCreate',
          value: NamespaceCreate.encode({ name: body, labels: {} }).finish(),
        },
      });
    const ac = new AbortController();
    cleanup.push(() => ac.abort());
    const got: string[] = [];
    void (async () => {
      for await (const e of bus.subscribe({ from: { kind: 'all' }, namespace: 'gone', signal: ac.signal }))
        got.push(NamespaceCreate.decode(e.event.value).name);
    })();
    await publish('e0');
    await until('the first event', () => got.length === 1, 5_000);

    const nc = await connect({ servers: nats.url });
    cleanup.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    for (const c of await jsm.consumers.list('GONE').next()) await jsm.consumers.delete('GONE', c.name);
    const deleted = Date.now();
    await publish('e1');
    await publish('e2');
    await until('the events after the deletion', () => got.length >= 3, 10_000);
    const late = Date.now() - deleted;
    await new Promise((res) => setTimeout(res, 300));
    expect(got).toEqual(['e0', 'e1', 'e2']);
    expect(late).toBeLessThan(2_000);
  });
});
