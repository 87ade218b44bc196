/**
 * @berth/events/client: how clients watch the event stream, as `berth events` does: containerd's
 * Events.Subscribe (new events) and Berth's EventsReplay.Subscribe (from a point, with sequence numbers).
 * A gRPC proxy only: services publish through the bus (`@berth/common/event-bus`, the outbox), and nothing
 * in berthd subscribes in process.
 */
import type { CallContext } from '@berth/common/context';
import { channelOptions, dial, outgoingMetadata, streamOf } from '@berth/common/grpc-client';
import { EventsReplayClient } from '@berth/proto/berth/internal/v1/events';
import { EventsClient as EventsGrpcClient } from '@berth/proto/containerd/services/events/v1/events';
import type { AnyPayload } from './payloads/index.js';

export type { CallContext } from '@berth/common/context';

/** One event as the stream delivers it: where and when it happened, and its payload (an Any). */
export interface EventEnvelope {
  readonly timestamp?: Date | undefined;
  readonly namespace: string;
  readonly topic: string;
  readonly event?: AnyPayload | undefined;
}

/** A replayed event: its position in the stream (resume after it with `fromSeq: seq + 1`) and its node. */
export interface SequencedEvent {
  readonly seq: number;
  readonly envelope?: EventEnvelope | undefined;
  /** The node that published the event; '' when the publisher did not say. */
  readonly node: string;
}

/** Where a replay starts: `fromSeq` (0: unset) or `since`, else at the new events. */
export interface ReplayFrom {
  readonly filters: readonly string[];
  readonly fromSeq: number;
  readonly since: Date | undefined;
}

/**
 * The subscriptions of a client. Each yields events until the server ends the stream or `ctx.signal` aborts
 * (then it throws the cancellation); a failure is a ServiceError with containerd's errdefs code. Filters use
 * containerd's syntax and are OR-ed.
 */
export interface EventsClient {
  /** Events.Subscribe: the events published from now on. */
  subscribe(ctx: CallContext, filters: readonly string[]): AsyncIterable<EventEnvelope>;
  /** EventsReplay.Subscribe: the retained events from a point, then the new ones. */
  replay(ctx: CallContext, from: ReplayFrom): AsyncIterable<SequencedEvent>;
  close(): void;
}

/** The events service at `address` (a node's socket or the service's own; mTLS over TCP when configured). */
export function remoteEvents(address: string): EventsClient {
  const events = dial(EventsGrpcClient, address);
  // One connection for both: the replay client rides the first one's channel.
  const replay = dial(EventsReplayClient, address, { ...channelOptions, channelOverride: events.getChannel() });
  return {
    subscribe: (ctx, filters) =>
      streamOf(events.subscribe({ filters: [...filters] }, outgoingMetadata(ctx)), ctx.signal),
    replay: (ctx, from) =>
      streamOf(
        replay.subscribe(
          { filters: [...from.filters], fromSeq: from.fromSeq, since: from.since },
          outgoingMetadata(ctx),
        ),
        ctx.signal,
      ),
    close: () => events.close(),
  };
}
