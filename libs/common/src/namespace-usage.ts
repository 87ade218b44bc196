import {
  NamespaceUsageClient,
  NamespaceUsageService,
  type ResourcesInResponse,
} from '@berth/proto/berth/internal/v1/namespace_usage';
import type { RequestContext } from './context.js';
import { dial, invoke } from './grpc-client.js';
import { handlers } from './grpc-handlers.js';
import type { GrpcRegistration } from './grpc-registration.js';
import type { Logger } from './log.js';

/**
 * Reports which kinds of resources a namespace still holds (`blobs`, `snapshots on "overlayfs"
 * snapshotter`, …); empty means it may be deleted. Every service that keeps namespaced resources provides
 * one, and metadata asks them all before deleting a namespace.
 */
export interface NamespaceUsage {
  resourcesIn(ctx: RequestContext, namespace: string): Promise<string[]>;
}

/** Serves `usage` as `berth.internal.v1.NamespaceUsage`, for metadata running in another process. */
export function namespaceUsageRegistration(usage: NamespaceUsage, log: Logger): GrpcRegistration {
  const h = handlers(log);
  return {
    definition: NamespaceUsageService,
    implementation: {
      resourcesIn: h.unary(
        async (req: { namespace: string }, ctx): Promise<ResourcesInResponse> => ({
          kinds: await usage.resourcesIn(ctx, req.namespace),
        }),
      ),
    },
  };
}

/** Asks a service in another process; failures (e.g. unreachable) propagate, so a delete is refused. */
export function namespaceUsageClient(address: string): NamespaceUsage & { close(): void } {
  const client = dial(NamespaceUsageClient, address);
  return {
    resourcesIn: async (ctx, namespace) =>
      (
        await invoke<ResourcesInResponse>(
          (md, opts, cb) => client.resourcesIn({ namespace }, md, { ...opts, deadline: Date.now() + 10_000 }, cb),
          ctx,
        )
      ).kinds,
    close: () => client.close(),
  };
}
