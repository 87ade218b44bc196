import { handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type { LeasesServer } from '@berth/proto/containerd/services/leases/v1/leases';
import type { GarbageCollector } from '../gc.js';
import type { LeaseStore } from '../leases/types.js';
import { leaseToPb } from './convert.js';

/** `containerd.services.leases.v1.Leases` over a LeaseStore: validate, call, convert. */
export function createLeasesServer(store: LeaseStore, gc: GarbageCollector, log: Logger): LeasesServer {
  const h = handlers(log);
  const resourceOf = (r: { id: string; type: string } | undefined): { id: string; type: string } => ({
    id: r?.id ?? '',
    type: r?.type ?? '',
  });
  return {
    create: h.unary(async (req, ctx) => ({ lease: leaseToPb(await store.create(ctx, req.id, req.labels)) })),
    delete: h.unary(async (req, ctx) => {
      await store.delete(ctx, req.id);
      if (req.sync) await gc.collect(ctx);
      return {};
    }),
    list: h.unary(async (req, ctx) => ({ leases: (await store.list(ctx, req.filters)).map(leaseToPb) })),
    addResource: h.unary(async (req, ctx) => {
      await store.addResource(ctx, req.id, resourceOf(req.resource));
      return {};
    }),
    deleteResource: h.unary(async (req, ctx) => {
      await store.deleteResource(ctx, req.id, resourceOf(req.resource));
      return {};
    }),
    listResources: h.unary(async (req, ctx) => ({ resources: await store.listResources(ctx, req.id) })),
  };
}
