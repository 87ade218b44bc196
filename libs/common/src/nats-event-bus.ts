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
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { unavailable } from './errors.js';
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
}

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

/**
 * The cluster bus: one JetStream stream, events stored as containerd `Envelope` protobufs. Publishing waits
 * for the server's ack; `id` maps to JetStream's `Nats-Msg-Id` deduplication. Each subscriber has its own
 * ordered consumer, so a slow one only delays itself.
 */
export async function createNatsBus(opts: NatsBusOptions): Promise<EventBus> {
  const stream = opts.stream ?? 'BERTH_EVENTS';
  const prefix = opts.subjectPrefix ?? 'berth.events';
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
  // While the client is reconnecting, a publish would sit in its buffer until the timeout; failing at once
  // lets callers (the outbox relay) back off instead of stalling, and nothing is sent twice out of order.
  let connected = true;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') connected = false;
      else if (s.type === 'reconnect') connected = true;
    }
  })();

  return {
    async publish(e: EventEnvelope, popts?: PublishOptions) {
      const data = Envelope.encode({
        timestamp: e.timestamp,
        namespace: e.namespace,
        topic: e.topic,
        event: { typeUrl: e.event.typeUrl, value: Buffer.from(e.event.value) },
      }).finish();
      if (!connected) throw unavailable(`publish ${e.topic}: not connected to NATS`);
      try {
        await js.publish(subjectFor(prefix, e.namespace, e.topic), data, popts?.id ? { msgID: popts.id } : undefined);
      } catch (err) {
        throw unavailable(`publish ${e.topic}`, err);
      }
    },

    async *subscribe(sopts: SubscribeOptions): AsyncIterable<StoredEvent> {
      const consumer = await js.consumers.get(stream, {
        filter_subjects: sopts.namespace ? `${prefix}.${subjectToken(sopts.namespace)}.>` : `${prefix}.>`,
        ...deliverFrom(sopts.from ?? { kind: 'new' }),
      });
      const messages = await consumer.consume({ max_messages: 256 });
      const stop = (): void => void messages.close();
      sopts.signal.addEventListener('abort', stop, { once: true });
      try {
        for await (const m of messages) {
          const env = Envelope.decode(m.data);
          const stored: StoredEvent = {
            seq: m.seq,
            timestamp: env.timestamp ?? new Date(0),
            namespace: env.namespace,
            topic: env.topic,
            event: { typeUrl: env.event?.typeUrl ?? '', value: env.event?.value ?? new Uint8Array() },
          };
          if (sopts.match && !sopts.match(stored)) continue;
          yield stored;
          if (sopts.signal.aborted) break;
        }
      } finally {
        sopts.signal.removeEventListener('abort', stop);
        await messages.close();
      }
    },

    async close() {
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
