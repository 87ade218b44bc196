import { type IncomingMessage, request } from 'node:http';
import { backgroundContext } from '@berth/common/context';
import { createInProcessBus, type EventBus } from '@berth/common/event-bus';
import { nopLogger } from '@berth/common/log';
import { NamespaceCreate } from '@berth/proto/containerd/events/namespace';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createExchange, type Exchange } from '../src/exchange/exchange.js';
import { registerEventStream } from '../src/http/event-stream.js';

interface SseEvent {
  readonly id: string | undefined;
  readonly data: {
    seq: number;
    node: string;
    namespace: string;
    topic: string;
    type_url: string;
    event: { name: string } | null;
    timestamp: string;
  };
}

/** A minimal SSE client over node:http that keeps the connection so a test can drop it mid-stream. */
function openStream(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ res: IncomingMessage; next(n: number): Promise<SseEvent[]>; drop(): void }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      let buf = '';
      const queue: SseEvent[] = [];
      let waiter: (() => void) | undefined;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const lines = block.split('\n');
          const data = lines
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (!data) continue;
          const id = lines.find((l) => l.startsWith('id: '))?.slice(4);
          queue.push({ id, data: JSON.parse(data) as SseEvent['data'] });
        }
        waiter?.();
      });
      resolve({
        res,
        drop: () => req.destroy(),
        async next(n) {
          const deadline = Date.now() + 5_000;
          while (queue.length < n) {
            if (Date.now() > deadline) throw new Error(`only ${queue.length} of ${n} SSE events arrived`);
            await new Promise<void>((r) => {
              waiter = r;
              setTimeout(r, 50);
            });
          }
          return queue.splice(0, n);
        },
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('GET /v1/events (Server-Sent Events)', () => {
  let app: FastifyInstance;
  let bus: EventBus;
  let exchange: Exchange;
  let base: string;
  const publish = (ns: string, name: string, topic = '/namespaces/create'): Promise<void> =>
    exchange.publish(backgroundContext(nopLogger, ns), topic, {
      typeUrl: 'containerd.events.NamespaceCreate',
      value: NamespaceCreate.encode({ name, labels: {} }).finish(),
    });

  beforeEach(async () => {
    bus = createInProcessBus({ node: 'node-1' });
    exchange = createExchange(bus);
    app = Fastify();
    registerEventStream(app, { exchange, log: nopLogger });
    base = await app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterEach(async () => {
    exchange.close();
    await app.close();
    await bus.close();
  });

  it('streams events with the bus sequence as id, the publishing node, and the payload as ctr prints it', async () => {
    const s = await openStream(`${base}/v1/events?from-seq=1`);
    expect(s.res.statusCode).toBe(200);
    expect(s.res.headers['content-type']).toMatch(/^text\/event-stream/);
    await publish('default', 'n1');
    const [e] = await s.next(1);
    expect(e?.id).toBe('1');
    expect(e?.data).toMatchObject({
      seq: 1,
      node: 'node-1',
      namespace: 'default',
      topic: '/namespaces/create',
      type_url: 'containerd.events.NamespaceCreate',
      event: { name: 'n1' },
    });
    s.drop();
  });

  it('resumes after a dropped connection with Last-Event-ID: no event lost, none repeated', async () => {
    for (let i = 0; i < 5; i++) await publish('default', `a${i}`);
    const first = await openStream(`${base}/v1/events?from-seq=1`);
    const got = await first.next(3);
    first.drop(); // the connection dies mid-stream, after 3 of the 5 retained events
    const lastId = got.at(-1)?.id ?? '';
    for (let i = 0; i < 5; i++) await publish('default', `b${i}`); // published while nobody listens

    const second = await openStream(`${base}/v1/events?from-seq=1`, { 'last-event-id': lastId });
    const rest = await second.next(7);
    const names = [...got, ...rest].map((e) => e.data.event?.name);
    expect(names).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3', 'b4']);
    expect([...got, ...rest].map((e) => Number(e.id))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    await publish('default', 'c0');
    expect((await second.next(1))[0]?.data.event?.name).toBe('c0');
    second.drop();
  });

  it('applies containerd filters and replays from a point in time', async () => {
    await publish('default', 'old');
    await new Promise((r) => setTimeout(r, 30));
    const since = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 30));
    await publish('other', 'x', '/images/create');
    await publish('other', 'y');
    await publish('default', 'z');
    const q = new URLSearchParams([
      ['since', since],
      ['filter', 'namespace==other,topic~="^/namespaces/"'],
      ['filter', 'event.name==z'],
    ]);
    const s = await openStream(`${base}/v1/events?${q}`);
    expect((await s.next(2)).map((e) => e.data.event?.name)).toEqual(['y', 'z']);
    s.drop();
  });

  it('answers 400 for a malformed filter or start point, before streaming', async () => {
    for (const q of ['filter=topic%3D%3D', 'from-seq=abc', 'from-seq=0', 'since=yesterday', 'from-seq=1&from-seq=2']) {
      const res = await fetch(`${base}/v1/events?${q}`);
      expect(res.status, q).toBe(400);
      expect(((await res.json()) as { error: string }).error.length).toBeGreaterThan(0);
    }
  });
});
