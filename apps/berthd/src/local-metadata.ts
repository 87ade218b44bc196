import { unavailable } from '@berth/common/errors';
import { localCall } from '@berth/common/local-call';
import type { Logger } from '@berth/common/log';
import { type MetadataCalls, type MetadataPeer, metadataPeer } from '@berth/common/metadata-peer';
import type { MetadataStores } from '@berth/metadata';
import { type ContainersPeer, localContainersPeer } from '@berth/tasks';

/**
 * All-in-one: how tasks and content reach metadata when it runs in the same process, calling its domain
 * layer instead of gRPC over the node's own socket. Each call behaves as the RPC would (`localCall`): same
 * context, same errors. Metadata is built after the modules that use it (it asks them about namespace
 * usage), so it is bound afterwards, before the node serves; a call before that fails unavailable, as an RPC
 * to a socket that does not listen yet would.
 */
export interface LocalMetadata {
  bind(stores: MetadataStores): void;
  /** For tasks: Containers.Get. */
  readonly containers: ContainersPeer;
  /** For content (and snapshots): Namespaces.Create, Leases.AddResource and DeleteResource. */
  peer(log: Logger): MetadataPeer;
}

export function localMetadata(): LocalMetadata {
  let bound: MetadataStores | undefined;
  const stores = (): MetadataStores => {
    if (!bound) throw unavailable('metadata is not serving yet');
    return bound;
  };
  const calls: MetadataCalls = {
    createNamespace: (ctx, name) =>
      localCall(ctx, async (c) => {
        await stores().namespaces.create(c, { name, labels: {} });
      }),
    addLeaseResource: (ctx, lease, resource) => localCall(ctx, (c) => stores().leases.addResource(c, lease, resource)),
    deleteLeaseResource: (ctx, lease, resource) =>
      localCall(ctx, (c) => stores().leases.deleteResource(c, lease, resource)),
    close: () => undefined,
  };
  return {
    bind: (s) => void (bound = s),
    containers: localContainersPeer((ctx, id) => localCall(ctx, (c) => stores().containers.get(c, id))),
    peer: (log) => metadataPeer(calls, log),
  };
}
