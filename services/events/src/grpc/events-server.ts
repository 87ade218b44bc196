import { invalidArgument } from '@berth/common/errors';
import { handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type { EventsServer } from '@berth/proto/containerd/services/events/v1/events';
import type { Exchange } from '../exchange/exchange.js';
import { envelopeToProto } from './convert.js';

/** `containerd.services.events.v1.Events` over an Exchange: validate, call, convert. */
export function createEventsServer(exchange: Exchange, log: Logger): EventsServer {
  const h = handlers(log);
  return {
    publish: h.unary(async (req, ctx) => {
      await exchange.publish(ctx, req.topic, req.event);
      return {};
    }),
    forward: h.unary(async (req, ctx) => {
      const env = req.envelope;
      if (!env) throw invalidArgument('event envelope must be set');
      await exchange.forward(ctx, {
        timestamp: env.timestamp,
        namespace: env.namespace,
        topic: env.topic,
        event: env.event,
      });
      return {};
    }),
    subscribe: h.serverStream(async function* (req, ctx) {
      for await (const e of exchange.subscribe(ctx, { filters: req.filters })) yield envelopeToProto(e);
    }),
  };
}
