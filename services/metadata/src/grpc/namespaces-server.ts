import { invalidArgument } from '@berth/common/errors';
import { handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type { NamespacesServer } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import type { NamespaceStore } from '../namespaces/types.js';

/** `containerd.services.namespaces.v1.Namespaces` over a NamespaceStore: validate, call, convert. */
export function createNamespacesServer(store: NamespaceStore, log: Logger): NamespacesServer {
  const h = handlers(log);
  return {
    get: h.unary(async (req, ctx) => ({ namespace: await store.get(ctx, req.name) })),
    list: h.unary(async (_req, ctx) => ({ namespaces: await store.list(ctx) })),
    create: h.unary(async (req, ctx) => {
      if (!req.namespace) throw invalidArgument('namespace must be set');
      return { namespace: await store.create(ctx, req.namespace) };
    }),
    update: h.unary(async (req, ctx) => {
      if (!req.namespace) throw invalidArgument('namespace must be set');
      return { namespace: await store.update(ctx, req.namespace, req.updateMask ?? []) };
    }),
    delete: h.unary(async (req, ctx) => {
      await store.delete(ctx, req.name);
      return {};
    }),
  };
}
