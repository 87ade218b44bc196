import type { EventBus } from '@berth/common/event-bus';
import type { Logger } from '@berth/common/log';
import type { ServiceModule } from '@berth/common/service';
import { EventsReplayService } from '@berth/proto/berth/internal/v1/events';
import { EventsService } from '@berth/proto/containerd/services/events/v1/events';
import { createExchange } from './exchange/exchange.js';
import { createEventsServer } from './grpc/events-server.js';
import { createReplayServer } from './grpc/replay-server.js';
import { registerEventStream } from './http/event-stream.js';

export { createExchange, type Exchange, type SubscribeRequest } from './exchange/exchange.js';
export { compileEventFilter, type EventFilter } from './exchange/filters.js';

export interface EventsDeps {
  /**
   * The bus every service publishes to: in all-in-one mode the very object the other modules were given,
   * in `serve events` mode a JetStream connection.
   */
  readonly bus: EventBus;
  readonly log: Logger;
}

/**
 * Builds the events service: containerd's `Events` (Publish, Forward, Subscribe with filters), Berth's
 * `EventsReplay` (subscribe from a sequence or a time), and the operators' SSE stream on the ops server.
 * It keeps no state of its own: the stream lives in the bus.
 */
export async function createEventsModule(deps: EventsDeps): Promise<ServiceModule> {
  const log = deps.log.child({ service: 'events' });
  const exchange = createExchange(deps.bus);
  return {
    name: 'events',
    grpc: [
      { definition: EventsService, implementation: createEventsServer(exchange, log) },
      { definition: EventsReplayService, implementation: createReplayServer(exchange, log) },
    ],
    plugins: [
      { type: 'io.containerd.event.v1', id: 'exchange' },
      { type: 'io.containerd.grpc.v1', id: 'events', requires: ['io.containerd.event.v1'] },
    ],
    http(app) {
      registerEventStream(app, { exchange, log });
    },
    async close() {
      exchange.close();
    },
  };
}
