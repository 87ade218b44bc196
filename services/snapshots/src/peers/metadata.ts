import * as grpc from '@grpc/grpc-js';
import type { RequestContext } from '@berth/common/context';
import { ErrorCode, codeOf } from '@berth/common/errors';
import { invoke } from '@berth/common/grpc-client';
import { channelOptions, dialTarget } from '@berth/common/grpc-server';
import { LeasesClient } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesClient, type CreateNamespaceResponse } from '@berth/proto/containerd/services/namespaces/v1/namespace';

/** What snapshots needs from metadata, which owns namespaces and leases. */
export interface MetadataPeer {
  /** Brings the namespace into being (a resource is created in it); idempotent. */
  ensureNamespace(ctx: RequestContext, namespace: string): Promise<void>;
  /** Attaches a resource to a lease so gc keeps it while the lease lives; not_found when the lease is unknown. */
  addLeaseResource(ctx: RequestContext, lease: string, resource: { type: string; id: string }): Promise<void>;
  close(): void;
}

/** Talks to metadata's public Namespaces and Leases APIs at `address` (the node socket in all-in-one). */
export function metadataPeer(address: string): MetadataPeer {
  const target = dialTarget(address);
  const creds = grpc.credentials.createInsecure();
  const namespaces = new NamespacesClient(target, creds, channelOptions);
  const leases = new LeasesClient(target, creds, channelOptions);
  // Short-lived: a namespace deleted once empty must be recreated by the next snapshot made in it.
  const known = new Map<string, number>();
  const knownForMs = 2_000;
  const deadline = (): Partial<grpc.CallOptions> => ({ deadline: Date.now() + 10_000 });
  return {
    async ensureNamespace(ctx, namespace) {
      if ((known.get(namespace) ?? 0) > Date.now()) return;
      try {
        await invoke<CreateNamespaceResponse>(
          (md, opts, cb) => namespaces.create({ namespace: { name: namespace, labels: {} } }, md, { ...opts, ...deadline() }, cb),
          { ...ctx, lease: undefined },
        );
      } catch (e) {
        const code = codeOf(e);
        if (code === ErrorCode.NotImplemented) {
          ctx.log.debug('metadata does not serve Namespaces; namespace not registered', { namespace });
          return;
        }
        if (code !== ErrorCode.AlreadyExists) throw e;
      }
      known.set(namespace, Date.now() + knownForMs);
    },
    async addLeaseResource(ctx, lease, resource) {
      try {
        await invoke<object>(
          (md, opts, cb) => leases.addResource({ id: lease, resource }, md, { ...opts, ...deadline() }, cb),
          ctx,
        );
      } catch (e) {
        if (codeOf(e) !== ErrorCode.NotImplemented) throw e;
        ctx.log.debug('metadata does not serve Leases.AddResource; resource not attached to its lease', { lease, ...resource });
      }
    },
    close() {
      namespaces.close();
      leases.close();
    },
  };
}
