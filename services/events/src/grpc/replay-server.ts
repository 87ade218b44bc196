import type { ReplayFrom } from '@berth/common/event-bus';
import { handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type { EventsReplayServer, ReplayRequest } from '@berth/proto/berth/internal/v1/events';
import type { Exchange } from '../exchange/exchange.js';
import { envelopeToProto } from './convert.js';

/** `berth.internal.v1.EventsReplay`: containerd's Subscribe with a starting point and sequence numbers. */
export function createReplayServer(exchange: Exchange, log: Logger): EventsReplayServer {
  const h = handlers(log);
  return {
    subscribe: h.serverStream(async function* (req, ctx) {
      for await (const e of exchange.subscribe(ctx, { filters: req.filters, from: replayFrom(req) })) {
        yield { seq: e.seq, envelope: envelopeToProto(e), node: e.node };
      }
    }),
  };
}

function replayFrom(req: ReplayRequest): ReplayFrom {
  if (req.fromSeq > 0) return { kind: 'seq', seq: req.fromSeq };
  if (req.since) return { kind: 'time', time: req.since };
  return { kind: 'new' };
}
