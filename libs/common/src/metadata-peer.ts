import { LeasesClient } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesClient } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import * as grpc from '@grpc/grpc-js';
import type { RequestContext } from './context.js';
import { codeOf, ErrorCode } from './errors.js';
import { invoke } from './grpc-client.js';
import { channelOptions, dialTarget } from './grpc-server.js';
import type { Logger } from './log.js';

/**
 * What services that create namespaced resources (content, snapshots) ask of metadata, which owns
 * namespaces and leases. Resource types are containerd's: `content`, `ingests`, `snapshots/<snapshotter>`.
 */
export interface MetadataPeer {
  /** Makes sure the namespace exists: a resource created in a namespace brings it into being. Never rejects. */
  ensureNamespace(ctx: RequestContext, namespace: string): Promise<void>;
  /**
   * Attaches a resource to the lease of `ctx`, when it carries one, so gc keeps it while the lease lives.
   * Rejects as metadata does (not_found for an unknown lease); a metadata without leases is tolerated.
   */
  addLeaseResource(ctx: RequestContext, type: string, id: string): Promise<void>;
  /** Detaches a resource from the lease of `ctx`, when it carries one. Best effort: never rejects. */
  removeLeaseResource(ctx: RequestContext, type: string, id: string): Promise<void>;
  close(): void;
}

/** For a service running without metadata (its own tests): nothing to register. */
export const noMetadataPeer: MetadataPeer = {
  ensureNamespace: async () => undefined,
  addLeaseResource: async () => undefined,
  removeLeaseResource: async () => undefined,
  close: () => undefined,
};

const callTimeoutMs = 10_000;
/** Short-lived: a namespace deleted once empty must be recreated by the next resource made in it. */
const namespaceKnownForMs = 2_000;

/**
 * A MetadataPeer over metadata's public gRPC API (Namespaces.Create, Leases.AddResource/DeleteResource) at
 * `address`. The channel connects on first use, so a node may pass its own socket before it listens.
 */
export function createMetadataPeer(address: string, log: Logger): MetadataPeer {
  const target = dialTarget(address);
  const creds = grpc.credentials.createInsecure();
  const namespaces = new NamespacesClient(target, creds, channelOptions);
  const leases = new LeasesClient(target, creds, channelOptions);
  const known = new Map<string, number>();
  let toldNoLeases = false;
  const opts = (o: Partial<grpc.CallOptions>): Partial<grpc.CallOptions> => ({
    ...o,
    deadline: Date.now() + callTimeoutMs,
  });

  return {
    async ensureNamespace(ctx, namespace) {
      if ((known.get(namespace) ?? 0) > Date.now()) return;
      try {
        await invoke(
          (md, o, cb) => namespaces.create({ namespace: { name: namespace, labels: {} } }, md, opts(o), cb),
          { ...ctx, lease: undefined },
        );
      } catch (e) {
        // Not remembered unless it exists: the next resource in this namespace tries again.
        if (codeOf(e) !== ErrorCode.AlreadyExists) {
          log.warn('could not create namespace in metadata', { namespace, err: e });
          return;
        }
      }
      known.set(namespace, Date.now() + namespaceKnownForMs);
    },
    async addLeaseResource(ctx, type, id) {
      const lease = ctx.lease;
      if (!lease) return;
      try {
        await invoke((md, o, cb) => leases.addResource({ id: lease, resource: { id, type } }, md, opts(o), cb), ctx);
      } catch (e) {
        if (codeOf(e) !== ErrorCode.NotImplemented) throw e;
        if (!toldNoLeases) log.debug('metadata does not serve Leases; resources are not attached to leases', { lease });
        toldNoLeases = true;
      }
    },
    async removeLeaseResource(ctx, type, id) {
      const lease = ctx.lease;
      if (!lease) return;
      try {
        await invoke((md, o, cb) => leases.deleteResource({ id: lease, resource: { id, type } }, md, opts(o), cb), ctx);
      } catch (e) {
        ctx.log.debug('detaching from lease failed', { lease, type, id, err: e });
      }
    },
    close() {
      namespaces.close();
      leases.close();
    },
  };
}
