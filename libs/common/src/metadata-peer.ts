import { LeasesClient } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesClient } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import type * as grpc from '@grpc/grpc-js';
import { type RequestContext, withoutLease } from './context.js';
import { codeOf, ErrorCode } from './errors.js';
import { invoke } from './grpc-client.js';
import { channelOptions, dialTarget } from './grpc-server.js';
import type { Logger } from './log.js';
import { channelCredentialsFor } from './tls/credentials.js';

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

/**
 * The metadata RPCs a MetadataPeer is made of, each rejecting as the RPC does: over gRPC (`grpcMetadataCalls`),
 * or straight to metadata's domain layer when it runs in the same process.
 */
export interface MetadataCalls {
  /** Namespaces.Create of `name` without labels. */
  createNamespace(ctx: RequestContext, name: string): Promise<void>;
  /** Leases.AddResource, in the namespace of `ctx`. */
  addLeaseResource(ctx: RequestContext, lease: string, resource: { id: string; type: string }): Promise<void>;
  /** Leases.DeleteResource, in the namespace of `ctx`. */
  deleteLeaseResource(ctx: RequestContext, lease: string, resource: { id: string; type: string }): Promise<void>;
  close(): void;
}

const callTimeoutMs = 10_000;
/** Short-lived: a namespace deleted once empty must be recreated by the next resource made in it. */
const namespaceKnownForMs = 2_000;

/** A MetadataPeer over metadata's public gRPC API at `address` (see grpcMetadataCalls). */
export function createMetadataPeer(address: string, log: Logger): MetadataPeer {
  return metadataPeer(grpcMetadataCalls(address), log);
}

/**
 * Metadata's Namespaces and Leases RPCs at `address`. The channel connects on first use, so a node may pass
 * its own socket before it listens.
 */
export function grpcMetadataCalls(address: string): MetadataCalls {
  const target = dialTarget(address);
  const creds = channelCredentialsFor(target);
  const namespaces = new NamespacesClient(target, creds, channelOptions);
  const leases = new LeasesClient(target, creds, channelOptions);
  const opts = (o: Partial<grpc.CallOptions>): Partial<grpc.CallOptions> => ({
    ...o,
    deadline: Date.now() + callTimeoutMs,
  });
  return {
    async createNamespace(ctx, name) {
      await invoke((md, o, cb) => namespaces.create({ namespace: { name, labels: {} } }, md, opts(o), cb), ctx);
    },
    async addLeaseResource(ctx, lease, resource) {
      await invoke((md, o, cb) => leases.addResource({ id: lease, resource }, md, opts(o), cb), ctx);
    },
    async deleteLeaseResource(ctx, lease, resource) {
      await invoke((md, o, cb) => leases.deleteResource({ id: lease, resource }, md, opts(o), cb), ctx);
    },
    close() {
      namespaces.close();
      leases.close();
    },
  };
}

/** The MetadataPeer contract (namespace ensuring, lease attachment and its tolerances) over `calls`. */
export function metadataPeer(calls: MetadataCalls, log: Logger): MetadataPeer {
  const known = new Map<string, number>();
  let toldNoLeases = false;

  return {
    async ensureNamespace(ctx, namespace) {
      if ((known.get(namespace) ?? 0) > Date.now()) return;
      try {
        await calls.createNamespace(withoutLease(ctx), namespace);
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
        await calls.addLeaseResource(ctx, lease, { id, type });
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
        await calls.deleteLeaseResource(ctx, lease, { id, type });
      } catch (e) {
        ctx.log.debug('detaching from lease failed', { lease, type, id, err: e });
      }
    },
    close: () => calls.close(),
  };
}
