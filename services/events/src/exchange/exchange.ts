import { type RequestContext, requireNamespace } from '@berth/common/context';
import { invalidArgument, wrap } from '@berth/common/errors';
import { type EventBus, type ReplayFrom, type StoredEvent, validateTopic } from '@berth/common/event-bus';
import { validateIdentifier } from '@berth/common/identifiers';
import { compileEventFilter } from './filters.js';

/** An event payload: containerd's `Any` with its type URL. */
export interface Payload {
  readonly typeUrl: string;
  readonly value: Uint8Array;
}

/** An envelope handed to `forward`: fields may be missing, which `forward` rejects. */
export interface ForwardedEnvelope {
  readonly timestamp: Date | undefined;
  readonly namespace: string;
  readonly topic: string;
  readonly event: Payload | undefined;
}

export interface SubscribeRequest {
  /** containerd filters; none (or one empty string) matches everything. */
  readonly filters: readonly string[];
  /** Default: only events published from now on, as containerd's Subscribe. */
  readonly from?: ReplayFrom;
}

/**
 * containerd's event exchange (`events/exchange`) over the Berth event bus: validates what enters,
 * filters what leaves. Every service publishes to the same bus; this is where clients watch it.
 */
export interface Exchange {
  /**
   * Publishes `event` under `topic` in the request's namespace, stamped now. failed_precondition without
   * a namespace; invalid_argument for a bad namespace or topic; unavailable when the bus does not accept it.
   */
  publish(ctx: RequestContext, topic: string, event: Payload | undefined): Promise<void>;
  /** Publishes an envelope as given (on behalf of another publisher); invalid_argument when it is malformed. */
  forward(ctx: RequestContext, envelope: ForwardedEnvelope): Promise<void>;
  /**
   * The matching events, oldest first, until ctx is cancelled. Throws invalid_argument at once for a
   * malformed filter. A slow reader only delays itself.
   */
  subscribe(ctx: RequestContext, req: SubscribeRequest): AsyncIterable<StoredEvent>;
  /** Ends every subscription (their iterators complete); publishing is left to the bus's owner. */
  close(): void;
}

const noPayload: Payload = { typeUrl: '', value: new Uint8Array() };

/** Go's zero time.Time, as a client sends an unset timestamp. */
const goZeroMs = -62135596800000;

export function createExchange(bus: EventBus): Exchange {
  const closing = new AbortController();
  return {
    async publish(ctx, topic, event) {
      let namespace: string;
      try {
        namespace = requireNamespace(ctx);
      } catch (e) {
        throw wrap(e, 'failed publishing event');
      }
      checkTopic(topic);
      await bus.publish({ timestamp: new Date(), namespace, topic, event: event ?? noPayload });
    },

    async forward(_ctx, envelope) {
      const namespace = envelope.namespace;
      try {
        validateIdentifier(namespace);
      } catch (e) {
        throw wrap(e, 'event envelope has invalid namespace');
      }
      const topic = envelope.topic;
      checkTopic(topic);
      const ts = envelope.timestamp;
      if (!ts || ts.getTime() === goZeroMs || Number.isNaN(ts.getTime())) {
        throw invalidArgument('timestamp must be set on forwarded event');
      }
      await bus.publish({ timestamp: ts, namespace, topic, event: envelope.event ?? noPayload });
    },

    subscribe(ctx, req) {
      const filter = compileEventFilter(req.filters);
      return bus.subscribe({
        from: req.from ?? { kind: 'new' },
        signal: AbortSignal.any([ctx.signal, closing.signal]),
        ...(filter.namespace !== undefined ? { namespace: filter.namespace } : {}),
        ...(filter.all ? {} : { match: filter.match }),
      });
    },

    close() {
      closing.abort();
    },
  };
}

function checkTopic(topic: string): void {
  try {
    validateTopic(topic);
  } catch (e) {
    throw wrap(e, `envelope topic ${JSON.stringify(topic)}`);
  }
}
