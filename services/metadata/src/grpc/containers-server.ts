import { ErrorCode, ServiceError } from '@berth/common/errors';
import { type HandlerOptions, handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type { ContainersServer, ListContainerMessage } from '@berth/proto/containerd/services/containers/v1/containers';
import type { ContainerStore } from '../containers/types.js';
import { containerFromPb, containerToPb } from './convert.js';

/** `containerd.services.containers.v1.Containers` over a ContainerStore: validate, call, convert. */
export function createContainersServer(
  store: ContainerStore,
  log: Logger,
  opts: HandlerOptions = {},
): ContainersServer {
  const h = handlers(log, opts);
  return {
    get: h.unary(async (req, ctx) => ({ container: containerToPb(await store.get(ctx, req.id)) })),
    list: h.unary(async (req, ctx) => ({ containers: (await store.list(ctx, req.filters)).map(containerToPb) })),
    listStream: h.serverStream(async function* (req, ctx): AsyncGenerator<ListContainerMessage> {
      for (const c of await store.list(ctx, req.filters)) yield { container: containerToPb(c) };
    }),
    create: h.unary(async (req, ctx) => ({
      container: containerToPb(await store.create(ctx, containerFromPb(req.container))),
    })),
    update: h.unary(async (req, ctx) => {
      // containerd's service answers with a bare status message, without the errdefs suffix.
      if (!req.container?.id) throw new ServiceError(ErrorCode.InvalidArgument, 'Container.ID required');
      return {
        container: containerToPb(await store.update(ctx, containerFromPb(req.container), req.updateMask ?? [])),
      };
    }),
    delete: h.unary(async (req, ctx) => {
      await store.delete(ctx, req.id);
      return {};
    }),
  };
}
