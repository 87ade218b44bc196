import { hostname } from 'node:os';
import { Envelope } from '@berth/proto/containerd/services/events/v1/events';
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { codeOf, ErrorCode, unavailable } from './errors.js';
import type {
  EventBus,
  EventEnvelope,
  PublishOptions,
  ReplayFrom,
  StoredEvent,
  SubscribeOptions,
} from './event-bus.js';
import type { Logger } from './log.js';

export interface NatsBusOptions {
  readonly url: string;
  readonly log: Logger;
  /** JetStream stream name. Default BERTH_EVENTS. */
  readonly stream?: string;
  /** Subject prefix; an event lands on `<prefix>.<namespace>.<topic parts>`. Default `berth.events`. */
  readonly subjectPrefix?: string;
  /** Retention by age. Default 24 h. */
  readonly maxAgeMs?: number;
  /** Retention by count: the oldest events go first once the stream holds this many. Default unlimited. */
  readonly maxEvents?: number;
  /** How long publishes wait for the server before failing (so callers can retry). Default 5 s. */
  readonly publishTimeoutMs?: number;
  /** The node name each published event carries (header `Berth-Node`). Default the host name. */
  readonly node?: string;
}

/** The NATS message header naming the node that published an event. */
export const nodeHeader = 'Berth-Node';

/**
 * Encodes a subject token: NATS tokens cannot hold `.`, `*`, `>` or spaces, while containerd identifiers may
 * hold dots. `%` never appears in an identifier, so the encoding is unambiguous.
 */
export function subjectToken(s: string): string {
  return s.replace(/[%.*> ]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

export function subjectFor(prefix: string, namespace: string, topic: string): string {
  const parts = topic.split('/').filter((p) => p !== '');
  return [prefix, subjectToken(namespace), ...parts.map(subjectToken)].join('.');
}

/** The connection's state as the bus sees it, shared by its publishes and subscriptions. */
interface Link {
  readonly up: boolean;
  /** Calls `listener(up)` on every disconnect (false) and reconnect (true); returns the unsubscribe. */
  on(listener: (up: boolean) => void): () => void;
  /** Resolves once the connection is up (at once if it is), or when `signal` aborts. */
  untilUp(signal: AbortSignal): Promise<void>;
}

function watchLink(nc: NatsConnection): Link {
  let up = true;
  const listeners = new Set<(up: boolean) => void>();
  const set = (v: boolean): void => {
    up = v;
    for (const l of [...listeners]) l(v);
  };
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') set(false);
      else if (s.type === 'reconnect') set(true);
    }
  })();
  const on = (listener: (up: boolean) => void): (() => void) => {
    listeners.add(listener);
    return () => listeners.delete(listener);
  };
  return {
    get up() {
      return up;
    },
    on,
    untilUp(signal) {
      if (up || signal.aborted) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const done = (): void => {
          off();
          signal.removeEventListener('abort', done);
          resolve();
        };
        const off = on((v) => v && done());
        signal.addEventListener('abort', done, { once: true });
      });
    },
  };
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * Consumer troubles after which a subscription starts a consumer of its own rather than let nats.js recover
 * the ordered consumer (see createNatsBus): its consumer is gone or stalled.
 */
const restartOn = new Set<string>([
  'heartbeats_missed',
  'consumer_deleted',
  'consumer_not_found',
  'no_responders',
  'reset',
]);

/** How soon a subscription tries again when creating its consumer failed while connected. */
const consumerRetryMs = 200;

/**
 * The cluster bus: one JetStream stream, events stored as containerd `Envelope` protobufs, the publishing
 * node in a `Berth-Node` header. Publishing waits for the server's ack; `id` maps to JetStream's
 * `Nats-Msg-Id` deduplication. Each subscriber has its own ordered consumer, so a slow one only delays itself.
 *
 * A subscription survives outages by itself: when the connection drops it drops its consumer, and when the
 * connection is back it creates a new one at the sequence after the last event it delivered. (nats.js's own
 * recovery of an ordered consumer keeps the old pull's bookkeeping after re-creating the consumer, so the new
 * consumer is asked for one message and the rest wait for two missed idle heartbeats, ~45 s; and an ordered
 * consumer that has delivered nothing yet restarts at sequence 1.)
 */
export async function createNatsBus(opts: NatsBusOptions): Promise<EventBus> {
  const stream = opts.stream ?? 'BERTH_EVENTS';
  const prefix = opts.subjectPrefix ?? 'berth.events';
  const node = opts.node ?? hostname();
  const maxAgeNs = (opts.maxAgeMs ?? 24 * 3600_000) * 1_000_000;
  const maxMsgs = opts.maxEvents ?? -1;
  const nc: NatsConnection = await connect({
    servers: opts.url,
    name: 'berth',
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  });
  const jsm: JetStreamManager = await jetstreamManager(nc);
  const config = {
    name: stream,
    subjects: [`${prefix}.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: maxAgeNs,
    max_msgs: maxMsgs,
    duplicate_window: 120 * 1_000_000_000,
  };
  try {
    await jsm.streams.info(stream);
    await jsm.streams.update(stream, { max_age: maxAgeNs, max_msgs: maxMsgs });
  } catch {
    await jsm.streams.add(config);
  }
  const js: JetStreamClient = jetstream(nc, { timeout: opts.publishTimeoutMs ?? 5_000 });
  const link = watchLink(nc);
  const closing = new AbortController();

  /**
   * Runs a request unless the connection is down, and fails it as soon as the connection drops: its reply may
   * never come, and waiting for the timeout would stall the caller's retry well past the bus's return.
   */
  const whileUp = async <T>(what: string, start: () => Promise<T>): Promise<T> => {
    if (!link.up) throw unavailable(`${what}: not connected to NATS`);
    let off = (): void => undefined;
    const dropped = new Promise<never>((_, reject) => {
      off = link.on((up) => up || reject(unavailable(`${what}: the connection to NATS dropped`)));
    });
    const request = start();
    request.catch(() => undefined);
    try {
      return await Promise.race([request, dropped]);
    } finally {
      off();
    }
  };

  const publish = async (e: EventEnvelope, popts?: PublishOptions): Promise<void> => {
    const data = Envelope.encode({
      timestamp: e.timestamp,
      namespace: e.namespace,
      topic: e.topic,
      event: { typeUrl: e.event.typeUrl, value: Buffer.from(e.event.value) },
    }).finish();
    const h = headers();
    h.set(nodeHeader, node);
    // Failing at once while disconnected lets callers (the outbox relay) back off instead of stalling; their
    // retry (same id) is deduplicated if the first attempt was stored after all.
    try {
      await whileUp(`publish ${e.topic}`, () =>
        js.publish(subjectFor(prefix, e.namespace, e.topic), data, {
          headers: h,
          ...(popts?.id ? { msgID: popts.id } : {}),
        }),
      );
    } catch (err) {
      throw codeOf(err) === ErrorCode.Unavailable ? err : unavailable(`publish ${e.topic}`, err);
    }
  };

  /**
   * One consumer's life: its events from `from` until `signal` aborts, the connection drops or the consumer
   * is lost or stalls (`restartOn`); then it returns. `started` learns the first sequence it will deliver.
   */
  async function* segment(
    sopts: SubscribeOptions,
    signal: AbortSignal,
    from: ReplayFrom,
    started: (seq: number) => void,
  ): AsyncGenerator<StoredEvent> {
    const consumer = await whileUp('create a consumer', () =>
      js.consumers.get(stream, {
        filter_subjects: sopts.namespace ? `${prefix}.${subjectToken(sopts.namespace)}.>` : `${prefix}.>`,
        ...deliverFrom(from),
      }),
    );
    // The consumer's creation reply says where it starts ('new' and 'time' resolve to a sequence there).
    started((await consumer.info(true)).delivered.stream_seq + 1);
    const messages = await consumer.consume({ max_messages: 256 });
    const end = (): void => void messages.close();
    const offLink = link.on((up) => up || end());
    signal.addEventListener('abort', end, { once: true });
    if (!link.up || signal.aborted) end(); // dropped or stopped while the consumer was being set up
    void (async () => {
      for await (const s of messages.status()) if (restartOn.has(s.type)) end();
    })();
    try {
      for await (const m of messages) {
        const env = Envelope.decode(m.data);
        yield {
          seq: m.seq,
          node: m.headers?.get(nodeHeader) ?? '',
          timestamp: env.timestamp ?? new Date(0),
          namespace: env.namespace,
          topic: env.topic,
          event: { typeUrl: env.event?.typeUrl ?? '', value: env.event?.value ?? new Uint8Array() },
        };
        if (signal.aborted) break;
      }
    } finally {
      offLink();
      signal.removeEventListener('abort', end);
      await messages.close();
      // Otherwise it lingers on the server until its inactivity threshold (after a server restart it is gone).
      void link
        .untilUp(closing.signal)
        .then(() => consumer.delete())
        .catch(() => undefined);
    }
  }

  return {
    publish,

    onAvailable: (listener) => link.on((up) => up && listener()),

    async *subscribe(sopts: SubscribeOptions): AsyncIterable<StoredEvent> {
      const signal = AbortSignal.any([sopts.signal, closing.signal]);
      // The next sequence this subscriber is owed, once the first consumer said where it starts. Every later
      // consumer starts there, and anything below it (redelivered across a re-creation) is skipped.
      let next: number | undefined;
      let failures = 0;
      while (!signal.aborted && !nc.isClosed()) {
        await link.untilUp(signal);
        if (signal.aborted) break;
        const from: ReplayFrom = next === undefined ? (sopts.from ?? { kind: 'new' }) : { kind: 'seq', seq: next };
        try {
          for await (const e of segment(sopts, signal, from, (seq) => (next ??= seq))) {
            failures = 0;
            if (next !== undefined && e.seq < next) continue;
            next = e.seq + 1;
            if (sopts.match && !sopts.match(e)) continue;
            yield e;
          }
        } catch (err) {
          if (signal.aborted || nc.isClosed()) break;
          failures++;
          if (failures === 1 || failures % 50 === 0)
            opts.log.warn('event subscription: consumer failed, retrying', { err, failures });
        }
        // Ended by a drop (then the wait above is for the reconnect), a stall, or an error: try again soon.
        if (link.up) await sleep(consumerRetryMs, signal);
      }
    },

    async close() {
      closing.abort();
      await nc.drain();
    },
  };
}

function deliverFrom(from: ReplayFrom): {
  deliver_policy: DeliverPolicy;
  opt_start_seq?: number;
  opt_start_time?: string;
} {
  switch (from.kind) {
    case 'new':
      return { deliver_policy: DeliverPolicy.New };
    case 'all':
      return { deliver_policy: DeliverPolicy.All };
    case 'seq':
      return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, from.seq) };
    case 'time':
      return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: from.time.toISOString() };
  }
}

/** AckPolicy is unused by ordered consumers; re-exported so callers building durable consumers share one import. */
export { AckPolicy };
