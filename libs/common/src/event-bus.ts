import { hostname } from 'node:os';
import { invalidArgument, wrap } from './errors.js';
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
  /** The node whose bus published it (`BerthdConfig.node`); '' when the publisher did not say. */
  readonly node: string;
}

/**
 * Where a subscription starts: only new events, everything retained, at a sequence (inclusive; resume after
 * event N with `seq: N + 1`), or at the first event the bus accepted at or after a time.
 */
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
  /**
   * Calls `listener` each time the bus is reachable again after an outage, so a publisher retrying with
   * backoff can retry at once; returns the unsubscribe. Absent on buses that are never unreachable.
   */
  onAvailable?(listener: () => void): () => void;
}

/**
 * The event stream every service publishes lifecycle events to. Subscribers each read at their own pace:
 * a slow subscriber never blocks publishers or other subscribers.
 */
export interface EventBus extends EventPublisher {
  subscribe(opts: SubscribeOptions): AsyncIterable<StoredEvent>;
  close(): Promise<void>;
}

/**
 * containerd's rule (`events/exchange` validateTopic): topics start with `/` and each component is an
 * identifier. Messages are containerd's; callers add the `envelope topic "<topic>"` context as it does.
 */
export function validateTopic(topic: string): void {
  if (topic === '') throw invalidArgument('must not be empty');
  if (!topic.startsWith('/')) throw invalidArgument(`must start with '/'`);
  if (topic.length === 1) throw invalidArgument('must have at least one component');
  for (const part of topic.slice(1).split('/')) {
    try {
      validateIdentifier(part);
    } catch (e) {
      throw wrap(e, `failed validation on component ${JSON.stringify(part)}`);
    }
  }
}

export interface InProcessBusOptions {
  /** The node name every event is stamped with. Default the host name. */
  readonly node?: string;
  /** Events older than this are dropped. Default 24 h. */
  readonly maxAgeMs?: number;
  /** At most this many events are retained. Default 100,000. */
  readonly maxEvents?: number;
  /** Ids remembered for deduplication. Default 2 minutes, like JetStream's default window. */
  readonly dedupeWindowMs?: number;
}

/** A retained event and when the bus accepted it (what replay by time and retention by age use, as JetStream). */
interface Slot {
  readonly event: StoredEvent;
  readonly at: number;
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
  const node = opts.node ?? hostname();
  // log[head..] are the retained events, with consecutive sequence numbers; the dropped prefix is cut off in
  // chunks so retention costs O(1) per publish.
  let log: Slot[] = [];
  let head = 0;
  let nextSeq = 1;
  let lastAt = 0;
  const seenIds = new Map<string, number>();
  // Subscribers waiting for the next publish. One resolver per wait, dropped when called: a long-lived
  // subscription must not accumulate reactions on a promise that never settles.
  const waiters = new Set<() => void>();
  let closed = false;
  const wakeAll = (): void => {
    for (const w of waiters) w();
    waiters.clear();
  };

  const firstSeq = (): number => log[head]?.event.seq ?? nextSeq;

  const trim = (now: number): void => {
    const cutoff = now - maxAgeMs;
    while (head < log.length && (log.length - head > maxEvents || (log[head]?.at ?? Infinity) < cutoff)) head++;
    if (head >= 4096 && head * 2 >= log.length) {
      log = log.slice(head);
      head = 0;
    }
    const idCutoff = now - dedupeWindowMs;
    for (const [id, at] of seenIds) {
      if (at >= idCutoff) break;
      seenIds.delete(id);
    }
  };

  /** The first retained sequence accepted at or after `t` (binary search: acceptance times never decrease). */
  const seqAtTime = (t: number): number => {
    let lo = head;
    let hi = log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((log[mid]?.at ?? Infinity) < t) lo = mid + 1;
      else hi = mid;
    }
    return log[lo]?.event.seq ?? nextSeq;
  };

  const startSeq = (from: ReplayFrom): number => {
    switch (from.kind) {
      case 'new':
        return nextSeq;
      case 'all':
        return firstSeq();
      case 'seq':
        return from.seq;
      case 'time':
        return seqAtTime(from.time.getTime());
    }
  };

  return {
    async publish(envelope, popts) {
      if (closed) throw new Error('event bus closed');
      const now = Date.now();
      if (popts?.id !== undefined) {
        if (seenIds.has(popts.id)) return;
        seenIds.set(popts.id, now);
      }
      lastAt = Math.max(lastAt, now);
      log.push({ event: { ...envelope, seq: nextSeq++, node }, at: lastAt });
      trim(now);
      wakeAll();
    },

    async *subscribe(sopts) {
      trim(Date.now());
      let seq = startSeq(sopts.from ?? { kind: 'new' });
      let waiting: (() => void) | undefined;
      const onAbort = (): void => waiting?.();
      sopts.signal.addEventListener('abort', onAbort, { once: true });
      try {
        while (!sopts.signal.aborted && !closed) {
          const first = firstSeq();
          if (seq < first) seq = first;
          if (seq >= nextSeq) {
            await new Promise<void>((resolve) => {
              waiting = resolve;
              waiters.add(resolve);
            });
            waiting = undefined;
            continue;
          }
          const e = log[head + (seq - first)]?.event;
          seq++;
          if (!e) continue;
          if (sopts.namespace !== undefined && e.namespace !== sopts.namespace) continue;
          if (sopts.match && !sopts.match(e)) continue;
          yield e;
        }
      } finally {
        sopts.signal.removeEventListener('abort', onAbort);
        if (waiting) waiters.delete(waiting);
      }
    },

    async close() {
      closed = true;
      wakeAll();
    },
  };
}
