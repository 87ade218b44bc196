import { invalidArgument } from './errors.js';
import { validateIdentifier } from './identifiers.js';

/** An event as containerd carries it: the payload stays an encoded `Any` with containerd's type URL. */
export interface EventEnvelope {
  readonly timestamp: Date;
  readonly namespace: string;
  readonly topic: string;
  readonly event: { readonly typeUrl: string; readonly value: Uint8Array };
}

/** An envelope as stored by the bus, with its position in the stream (1-based, increasing). */
export interface StoredEvent extends EventEnvelope {
  readonly seq: number;
}

/** Where a subscription starts: only new events, everything retained, after a sequence, or at a time. */
export type ReplayFrom =
  | { readonly kind: 'new' }
  | { readonly kind: 'all' }
  | { readonly kind: 'seq'; readonly seq: number }
  | { readonly kind: 'time'; readonly time: Date };

export interface SubscribeOptions {
  readonly from?: ReplayFrom;
  /** Narrows delivery to one namespace; lets the NATS bus filter on the server. */
  readonly namespace?: string;
  /** Events for which this returns false are skipped (containerd filters, compiled by the caller). */
  readonly match?: (e: EventEnvelope) => boolean;
  /** Ends the subscription; the iterator then completes without error. */
  readonly signal: AbortSignal;
}

export interface PublishOptions {
  /**
   * A stable id for this event. A bus that sees the same id twice within its dedupe window stores it
   * once, so relays can retry safely.
   */
  readonly id?: string;
}

/** Publishing side. `publish` resolves once the event is durably accepted by the bus. */
export interface EventPublisher {
  publish(envelope: EventEnvelope, opts?: PublishOptions): Promise<void>;
}

/**
 * The event stream every service publishes lifecycle events to. Subscribers each read at their own pace:
 * a slow subscriber never blocks publishers or other subscribers.
 */
export interface EventBus extends EventPublisher {
  subscribe(opts: SubscribeOptions): AsyncIterable<StoredEvent>;
  close(): Promise<void>;
}

/** containerd's rule (`events/exchange`): topics start with `/` and each component is an identifier. */
export function validateTopic(topic: string): void {
  if (!topic.startsWith('/')) throw invalidArgument(`must start with '/': ${JSON.stringify(topic)}`);
  if (topic.length === 1) throw invalidArgument('must have at least one component');
  for (const part of topic.slice(1).split('/')) {
    validateIdentifier(part);
  }
}

export interface InProcessBusOptions {
  /** Events older than this are dropped. Default 24 h. */
  readonly maxAgeMs?: number;
  /** At most this many events are retained. Default 100,000. */
  readonly maxEvents?: number;
  /** Ids remembered for deduplication. Default 2 minutes, like JetStream's default window. */
  readonly dedupeWindowMs?: number;
}

/**
 * The all-in-one bus: an in-memory log with the same semantics as the JetStream one (sequence numbers,
 * replay from a time or a sequence, retention, dedupe by id). Subscribers hold a cursor into the log, so a
 * slow one only falls behind; if retention passes it by, it continues at the oldest retained event.
 */
export function createInProcessBus(opts: InProcessBusOptions = {}): EventBus {
  const maxAgeMs = opts.maxAgeMs ?? 24 * 3600_000;
  const maxEvents = opts.maxEvents ?? 100_000;
  const dedupeWindowMs = opts.dedupeWindowMs ?? 120_000;
  const log: StoredEvent[] = [];
  let nextSeq = 1;
  const seenIds = new Map<string, number>();
  let wake: { promise: Promise<void>; resolve: () => void } = deferred();
  let closed = false;

  const trim = (): void => {
    const cutoff = Date.now() - maxAgeMs;
    let drop = Math.max(0, log.length - maxEvents);
    while (drop < log.length && (log[drop]?.timestamp.getTime() ?? Infinity) < cutoff) drop++;
    if (drop > 0) log.splice(0, drop);
    const idCutoff = Date.now() - dedupeWindowMs;
    for (const [id, at] of seenIds) {
      if (at >= idCutoff) break;
      seenIds.delete(id);
    }
  };

  /** Index in `log` of the first event with seq >= `seq`. */
  const indexOfSeq = (seq: number): number => {
    const first = log[0]?.seq ?? nextSeq;
    return Math.max(0, Math.min(log.length, seq - first));
  };

  const startSeq = (from: ReplayFrom): number => {
    switch (from.kind) {
      case 'new':
        return nextSeq;
      case 'all':
        return log[0]?.seq ?? nextSeq;
      case 'seq':
        return from.seq;
      case 'time': {
        const t = from.time.getTime();
        const found = log.find((e) => e.timestamp.getTime() >= t);
        return found?.seq ?? nextSeq;
      }
    }
  };

  return {
    async publish(envelope, popts) {
      if (closed) throw new Error('event bus closed');
      if (popts?.id !== undefined) {
        if (seenIds.has(popts.id)) return;
        seenIds.set(popts.id, Date.now());
      }
      log.push({ ...envelope, seq: nextSeq++ });
      trim();
      const w = wake;
      wake = deferred();
      w.resolve();
    },

    async *subscribe(sopts) {
      let seq = startSeq(sopts.from ?? { kind: 'new' });
      const aborted = new Promise<void>((resolve) => {
        if (sopts.signal.aborted) resolve();
        sopts.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      while (!sopts.signal.aborted && !closed) {
        const first = log[0]?.seq ?? nextSeq;
        if (seq < first) seq = first;
        if (seq >= nextSeq) {
          await Promise.race([wake.promise, aborted]);
          continue;
        }
        const e = log[indexOfSeq(seq)];
        seq++;
        if (!e) continue;
        if (sopts.namespace !== undefined && e.namespace !== sopts.namespace) continue;
        if (sopts.match && !sopts.match(e)) continue;
        yield e;
      }
    },

    async close() {
      closed = true;
      wake.resolve();
    },
  };
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
