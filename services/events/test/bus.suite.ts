import type { EventBus, EventEnvelope, StoredEvent, SubscribeOptions } from '@berth/common/event-bus';
import { describe, expect, it } from 'vitest';

/**
 * One contract, every EventBus: the in-process bus of the all-in-one mode and the JetStream bus must
 * behave the same, so the events service (and every publisher) cannot tell them apart.
 */
export interface BusHandle {
  readonly bus: EventBus;
  /** A second client of the same stream (another process, for NATS); the same object in-process. */
  readonly peer: EventBus;
  /** The node names `bus` and `peer` were given (the same in-process, where they are one bus). */
  readonly nodes: { readonly bus: string; readonly peer: string };
  teardown(): Promise<void>;
}

export interface BusFactoryOptions {
  readonly maxEvents?: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function envelope(namespace: string, topic: string, body: string, timestamp = new Date()): EventEnvelope {
  return { timestamp, namespace, topic, event: { typeUrl: 'berth.test.Body', value: enc.encode(body) } };
}

export const bodyOf = (e: StoredEvent): string => dec.decode(e.event.value);

/** Reads `n` events from a subscription, then ends it; fails after `timeoutMs`. */
export async function take(
  bus: EventBus,
  n: number,
  opts: Omit<SubscribeOptions, 'signal'> = {},
  timeoutMs = 10_000,
  onEach?: (e: StoredEvent) => Promise<void>,
): Promise<StoredEvent[]> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  const out: StoredEvent[] = [];
  try {
    if (n === 0) return out;
    for await (const e of bus.subscribe({ ...opts, signal: ac.signal })) {
      out.push(e);
      if (onEach) await onEach(e);
      if (out.length >= n) break;
    }
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  if (out.length < n)
    throw new Error(`got ${out.length} of ${n} events within ${timeoutMs} ms: ${out.map(bodyOf).join(',')}`);
  return out;
}

/** Starts a subscription and resolves once it is attached (a marker event published afterwards reaches it). */
async function subscribed(
  bus: EventBus,
  publisher: EventBus,
  ns: string,
  opts: Omit<SubscribeOptions, 'signal' | 'from'>,
  n: number,
): Promise<{ events: Promise<StoredEvent[]> }> {
  const ac = new AbortController();
  const seen: StoredEvent[] = [];
  let markerSeen: () => void = () => undefined;
  const marker = new Promise<void>((r) => (markerSeen = r));
  const events = (async () => {
    const timer = setTimeout(() => ac.abort(), 20_000);
    try {
      for await (const e of bus.subscribe({ ...opts, from: { kind: 'new' }, signal: ac.signal })) {
        if (e.topic === '/marker/ready') {
          markerSeen();
          continue;
        }
        seen.push(e);
        if (seen.length >= n) break;
      }
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
    return seen;
  })();
  // A 'new' subscription starts when the bus registers it; markers are published until one arrives.
  for (let i = 0; ; i++) {
    await publisher.publish(envelope(ns, '/marker/ready', `m${i}`));
    const ok = await Promise.race([
      marker.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 100)),
    ]);
    if (ok) break;
    if (i > 100) throw new Error('subscription never attached');
  }
  return { events };
}

export function busConformance(name: string, setup: (opts?: BusFactoryOptions) => Promise<BusHandle>): void {
  describe(`EventBus conformance: ${name}`, () => {
    let nsCounter = 0;
    // The NATS server may be shared with other tests: each test works in namespaces of its own.
    const freshNs = (): string => `ns${Date.now().toString(36)}${(nsCounter++).toString(36)}`;

    it('delivers published events in order with increasing sequence numbers, to subscribers on other connections', async () => {
      const h = await setup();
      try {
        const ns = freshNs();
        const sub = await subscribed(h.peer, h.bus, ns, { namespace: ns }, 50);
        for (let i = 0; i < 50; i++) await h.bus.publish(envelope(ns, '/tasks/exit', `e${i}`));
        const got = await sub.events;
        expect(got.map(bodyOf)).toEqual(Array.from({ length: 50 }, (_, i) => `e${i}`));
        for (let i = 1; i < got.length; i++) expect(got[i]?.seq).toBeGreaterThan(got[i - 1]?.seq ?? Infinity);
        const first = got[0];
        expect(first?.namespace).toBe(ns);
        expect(first?.topic).toBe('/tasks/exit');
        expect(first?.event.typeUrl).toBe('berth.test.Body');
        expect(first?.timestamp).toBeInstanceOf(Date);
      } finally {
        await h.teardown();
      }
    });

    it('replays everything retained, from a sequence (inclusive), and from a point in time', async () => {
      const h = await setup();
      try {
        const ns = freshNs();
        for (let i = 0; i < 5; i++) await h.bus.publish(envelope(ns, '/a/b', `old${i}`));
        await new Promise((r) => setTimeout(r, 50));
        const cut = new Date();
        await new Promise((r) => setTimeout(r, 50));
        for (let i = 0; i < 5; i++) await h.bus.publish(envelope(ns, '/a/b', `new${i}`));

        const all = await take(h.peer, 10, { from: { kind: 'all' }, namespace: ns });
        expect(all.map(bodyOf)).toEqual([
          ...[0, 1, 2, 3, 4].map((i) => `old${i}`),
          ...[0, 1, 2, 3, 4].map((i) => `new${i}`),
        ]);

        const third = all[2];
        if (!third) throw new Error('missing event');
        const fromSeq = await take(h.peer, 8, { from: { kind: 'seq', seq: third.seq }, namespace: ns });
        expect(fromSeq.map(bodyOf)).toEqual(all.slice(2).map(bodyOf));

        const fromTime = await take(h.peer, 5, { from: { kind: 'time', time: cut }, namespace: ns });
        expect(fromTime.map(bodyOf)).toEqual([0, 1, 2, 3, 4].map((i) => `new${i}`));
      } finally {
        await h.teardown();
      }
    });

    it('narrows by namespace and by a match function without skipping later events', async () => {
      const h = await setup();
      try {
        const a = freshNs();
        const b = freshNs();
        for (let i = 0; i < 6; i++)
          await h.bus.publish(envelope(i % 2 ? a : b, i % 3 ? '/x/y' : '/tasks/exit', `e${i}`));
        const onlyA = await take(h.peer, 3, { from: { kind: 'all' }, namespace: a });
        expect(onlyA.map(bodyOf)).toEqual(['e1', 'e3', 'e5']);
        const exits = await take(h.peer, 2, {
          from: { kind: 'all' },
          match: (e) => (e.namespace === a || e.namespace === b) && e.topic === '/tasks/exit',
        });
        expect(exits.map(bodyOf)).toEqual(['e0', 'e3']);
      } finally {
        await h.teardown();
      }
    });

    it("stamps every event with its publisher's node name", async () => {
      const h = await setup();
      try {
        const ns = freshNs();
        await h.bus.publish(envelope(ns, '/a/b', 'from bus'));
        await h.peer.publish(envelope(ns, '/a/b', 'from peer'));
        const got = await take(h.bus, 2, { from: { kind: 'all' }, namespace: ns });
        expect(got.map((e) => [bodyOf(e), e.node])).toEqual([
          ['from bus', h.nodes.bus],
          ['from peer', h.nodes.peer],
        ]);
      } finally {
        await h.teardown();
      }
    });

    it('stores an event published twice with the same id once', async () => {
      const h = await setup();
      try {
        const ns = freshNs();
        await h.bus.publish(envelope(ns, '/a/b', 'one'), { id: `${ns}-1` });
        await h.bus.publish(envelope(ns, '/a/b', 'one again'), { id: `${ns}-1` });
        await h.bus.publish(envelope(ns, '/a/b', 'two'), { id: `${ns}-2` });
        const got = await take(h.peer, 2, { from: { kind: 'all' }, namespace: ns });
        expect(got.map(bodyOf)).toEqual(['one', 'two']);
        // Nothing else arrives behind them.
        await expect(take(h.peer, 3, { from: { kind: 'all' }, namespace: ns }, 500)).rejects.toThrow(/got 2 of 3/);
      } finally {
        await h.teardown();
      }
    });

    it('a deliberately slow subscriber blocks neither publishers nor other subscribers, and still gets everything', async () => {
      const h = await setup();
      try {
        const ns = freshNs();
        const n = 200;
        const fast = await subscribed(h.peer, h.bus, ns, { namespace: ns }, n);
        let slowCount = 0;
        const slowAc = new AbortController();
        const slowDone = (async () => {
          const got: StoredEvent[] = [];
          for await (const e of h.peer.subscribe({ from: { kind: 'all' }, namespace: ns, signal: slowAc.signal })) {
            if (e.topic === '/marker/ready') continue;
            got.push(e);
            slowCount++;
            await new Promise((r) => setTimeout(r, 15)); // 15 ms per event: 3 s for all of them
            if (got.length >= n) break;
          }
          return got;
        })();

        const t0 = performance.now();
        await Promise.all(Array.from({ length: n }, (_, i) => h.bus.publish(envelope(ns, '/load/x', `e${i}`))));
        const publishMs = performance.now() - t0;
        const fastGot = await fast.events;
        const fastMs = performance.now() - t0;
        expect(fastGot.map(bodyOf)).toEqual(Array.from({ length: n }, (_, i) => `e${i}`));
        // The fast side finished long before the slow one could have (n × 15 ms = 3 s).
        expect(publishMs).toBeLessThan(1_500);
        expect(fastMs).toBeLessThan(1_500);
        expect(slowCount).toBeLessThan(n / 2);

        const slowGot = await slowDone;
        slowAc.abort();
        expect(slowGot.map(bodyOf)).toEqual(Array.from({ length: n }, (_, i) => `e${i}`));
      } finally {
        await h.teardown();
      }
    }, 30_000);

    it('retention by count drops the oldest events; a replay starts at the oldest retained one', async () => {
      const h = await setup({ maxEvents: 5 });
      try {
        const ns = freshNs();
        for (let i = 0; i < 8; i++) await h.bus.publish(envelope(ns, '/a/b', `e${i}`));
        const got = await take(h.peer, 5, { from: { kind: 'seq', seq: 1 } });
        expect(got.map(bodyOf)).toEqual(['e3', 'e4', 'e5', 'e6', 'e7']);
        await expect(take(h.peer, 6, { from: { kind: 'all' } }, 500)).rejects.toThrow(/got 5 of 6/);
      } finally {
        await h.teardown();
      }
    });

    it('ends a subscription when its signal aborts, even while waiting for events', async () => {
      const h = await setup();
      try {
        const ac = new AbortController();
        const it = h.peer
          .subscribe({ from: { kind: 'new' }, namespace: freshNs(), signal: ac.signal })
          [Symbol.asyncIterator]();
        const next = it.next();
        setTimeout(() => ac.abort(), 100);
        await expect(next).resolves.toEqual({ done: true, value: undefined });
      } finally {
        await h.teardown();
      }
    });
  });
}
