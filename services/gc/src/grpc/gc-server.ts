import { handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type { GCServer } from '@berth/proto/berth/internal/v1/gc';
import type { GcClient } from '../client.js';
import { statsToPb } from './convert.js';

/** `berth.internal.v1.GC` over the collector interface both the module and its client implement. */
export function createGcServer(gc: GcClient, log: Logger): GCServer {
  const h = handlers(log);
  return {
    collect: h.unary(async (_req, ctx) => ({ stats: statsToPb(await gc.collect(ctx)) })),
    status: h.unary(async (_req, ctx) => {
      const s = await gc.status(ctx);
      return {
        leader: s.leader,
        collections: s.collections,
        failures: s.failures,
        last: s.last ? statsToPb(s.last) : undefined,
      };
    }),
  };
}
