import { existsSync } from 'node:fs';
import type { PubAck } from '@nats-io/jetstream';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { connect } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { TestServerUnavailableError } from './attempts.js';
import type { NatsProcess } from './nats.js';
import { startNatsServer, useNats } from './nats.js';
import { uniqueName } from './unique-name.js';

async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (v: Record<string, string | undefined>): void => {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) delete process.env[k];
      else process.env[k] = val;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

const ms = (t0: number): string => `${(performance.now() - t0).toFixed(0)} ms`;

async function messagesIn(url: string, stream: string): Promise<string[]> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const out: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (m) out.push(m.string());
    }
    return out;
  } finally {
    await nc.close();
  }
}

describe('startNatsServer', () => {
  const servers: NatsProcess[] = [];
  const conns: NatsConnection[] = [];
  afterEach(async () => {
    for (const nc of conns.splice(0)) await nc.close().catch(() => {});
    for (const s of servers.splice(0)) await s.dispose();
  });

  it('keeps JetStream messages across stop() and restart() on the same port, and a client reconnects', async () => {
    const t0 = performance.now();
    const nats = await startNatsServer();
    servers.push(nats);
    console.info(`startNatsServer ready in ${ms(t0)} on port ${nats.port}`);
    expect(nats.running).toBe(true);
    expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);

    const nc = await connect({ servers: nats.url, reconnectTimeWait: 50, maxReconnectAttempts: -1 });
    conns.push(nc);
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'ORDERS', subjects: ['orders.>'] });
    const js = jetstream(nc);
    const ack = await js.publish('orders.1', 'first');
    expect(ack.seq).toBe(1);

    const port = nats.port;
    await nats.stop();
    expect(nats.running).toBe(false);
    const t1 = performance.now();
    await nats.restart();
    console.info(`NatsProcess.restart ready in ${ms(t1)}`);
    expect(nats.port).toBe(port);

    // The old connection reconnects to the restarted server and can keep publishing. A publish
    // issued while the client is still reconnecting may get no ack (nats.js can drop it), so
    // retry with a msgID: JetStream de-duplicates, giving exactly-once storage.
    let ack2: PubAck | undefined;
    for (let attempt = 1; ack2 === undefined; attempt++) {
      try {
        ack2 = await js.publish('orders.2', 'second', { msgID: 'orders-2', timeout: 1000 });
      } catch (err) {
        if (attempt >= 10) throw err;
      }
    }
    expect(ack2.seq).toBe(2);
    expect(await messagesIn(nats.url, 'ORDERS')).toEqual(['first', 'second']);
  });

  it('keeps messages across kill() (SIGKILL) and restart()', async () => {
    const nats = await startNatsServer();
    servers.push(nats);
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'EVENTS', subjects: ['events.>'] });
    const js = jetstream(nc);
    for (let i = 0; i < 20; i++) await js.publish(`events.${i}`, `m${i}`);
    await nc.close();

    await nats.kill();
    expect(nats.running).toBe(false);
    await nats.restart();
    const got = await messagesIn(nats.url, 'EVENTS');
    expect(got).toHaveLength(20);
    expect(got[19]).toBe('m19');
  });

  it('dispose() stops the server and removes its store', async () => {
    const nats = await startNatsServer();
    const { storeDir, pid } = nats;
    expect(pid).toBeTypeOf('number');
    await nats.dispose();
    expect(nats.running).toBe(false);
    expect(existsSync(storeDir)).toBe(false);
    expect(() => process.kill(pid!, 0)).toThrow();
  });

  it('a failed start says why and shows the log', async () => {
    const nats = await startNatsServer();
    servers.push(nats);
    // Same port again: the second server cannot bind.
    await expect(startNatsServer({ port: nats.port, readyTimeoutMs: 5000 })).rejects.toThrow(
      /nats-server (exited during start|not ready)[\s\S]*--- last/,
    );
  });
});

describe('useNats', () => {
  it('gives a JetStream-enabled server', async () => {
    const t0 = performance.now();
    const nats = await useNats();
    console.info(`useNats (${nats.source}) ready in ${ms(t0)}`);
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      const stream = uniqueName('T_');
      await jsm.streams.add({ name: stream, subjects: [`${stream}.>`] });
      try {
        const ack = await jetstream(nc).publish(`${stream}.x`, 'hi');
        expect(ack.stream).toBe(stream);
        const m = await jsm.streams.getMessage(stream, { seq: ack.seq });
        expect(m?.string()).toBe('hi');
      } finally {
        await jsm.streams.delete(stream);
      }
    } finally {
      await nc.close();
      await nats.stop();
    }
  });

  it('uses BERTH_TEST_NATS_URL, and rejects one without JetStream loudly', async () => {
    const saved = process.env['BERTH_TEST_NATS_URL'];
    const plain = await startNatsServer({ jetstream: false });
    try {
      process.env['BERTH_TEST_NATS_URL'] = plain.url;
      await expect(useNats()).rejects.toThrow(/BERTH_TEST_NATS_URL=.* is set but unusable: .*JetStream is not enabled/);

      const js = await startNatsServer();
      try {
        process.env['BERTH_TEST_NATS_URL'] = js.url;
        const nats = await useNats();
        expect(nats).toMatchObject({ url: js.url, source: 'env' });
        await nats.stop();
        expect(js.running).toBe(true); // not ours to stop
      } finally {
        await js.dispose();
      }
    } finally {
      if (saved === undefined) delete process.env['BERTH_TEST_NATS_URL'];
      else process.env['BERTH_TEST_NATS_URL'] = saved;
      await plain.dispose();
    }
  });
});

describe('useNats without any server around (BERTH_TEST_LOOPBACK=0)', () => {
  it('spawns a private server and stop() ends it', async () => {
    await withEnv({ BERTH_TEST_LOOPBACK: '0', BERTH_TEST_NATS_URL: undefined }, async () => {
      const t0 = performance.now();
      const nats = await useNats();
      console.info(`useNats (${nats.source}) ready in ${ms(t0)}`);
      expect(nats.source).toBe('spawned');
      expect(nats.url).not.toBe('nats://127.0.0.1:4222');
      const nc = await connect({ servers: nats.url });
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'S', subjects: ['s.>'] });
      expect((await jetstream(nc).publish('s.1', 'x')).seq).toBe(1);
      await nc.close();
      await nats.stop();
      await expect(connect({ servers: nats.url, reconnect: false })).rejects.toThrow();
    });
  });

  it('throws a TestServerUnavailableError listing every attempt when nothing works', async () => {
    await withEnv(
      { BERTH_TEST_LOOPBACK: '0', BERTH_TEST_NATS_URL: undefined, BERTH_TEST_NATS_SERVER: '/nonexistent/nats-server' },
      async () => {
        const err: unknown = await useNats().then(
          () => new Error('expected useNats to fail'),
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(TestServerUnavailableError);
        const e = err as TestServerUnavailableError;
        expect(e.attempts).toHaveLength(4);
        expect(e.message).toMatch(/spawn nats-server.*ENOENT/);
      },
    );
  });
});
