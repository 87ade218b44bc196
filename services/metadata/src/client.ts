/**
 * @berth/metadata/client: how other services reach metadata, which owns namespaces, leases and container
 * records. Each domain interface has a gRPC proxy (`remote…`, split mode) and an in-process variant
 * (`inProcessMetadata`, all-in-one) that calls metadata's stores and answers and fails as the RPC would.
 * Clients of a node (the pull client, `berth images`) call metadata's public Images, Leases and Namespaces
 * APIs through `imagesOver`, `leasesOver` and `namespacesOver`, over their node connection.
 */
import { type RequestContext, withoutLease } from '@berth/common/context';
import type { Db, Queryable } from '@berth/common/db';
import { codeOf, ErrorCode, unavailable } from '@berth/common/errors';
import { dial, invoke } from '@berth/common/grpc-client';
import { localCall } from '@berth/common/local-call';
import type { Logger } from '@berth/common/log';
import {
  ContainersClient as ContainersGrpcClient,
  type GetContainerResponse,
} from '@berth/proto/containerd/services/containers/v1/containers';
import { LeasesClient } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesClient } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import type * as grpc from '@grpc/grpc-js';
import type { MetadataStores } from './index.js';

export { type ImageFields, type ImageRecord, type ImagesClient, imagesOver } from './client/images.js';
export { type LeaseRecord, type LeasesClient, leasesOver } from './client/leases.js';
export { type NamespacesClient, namespacesOver } from './client/namespaces.js';

/**
 * What services that create namespaced resources (content, snapshots) ask of metadata. Resource types are
 * containerd's: `content`, `ingests`, `snapshots/<snapshotter>`.
 */
export interface MetadataClient {
  /** Makes sure the namespace exists: a resource created in a namespace brings it into being. Never rejects. */
  ensureNamespace(ctx: RequestContext, namespace: string): Promise<void>;
  /**
   * Attaches a resource to the lease of `ctx`, when it carries one, so gc keeps it while the lease lives.
   * Rejects as metadata does (not_found for an unknown lease); a metadata without leases is tolerated.
   */
  addLeaseResource(ctx: RequestContext, type: string, id: string): Promise<void>;
  /** Detaches a resource from the lease of `ctx`, when it carries one. Best effort: never rejects. */
  removeLeaseResource(ctx: RequestContext, type: string, id: string): Promise<void>;
  /**
   * When metadata keeps its records in `db` itself, in this process (all-in-one, one database): lease
   * resource changes made inside a transaction of the caller's on `db`, which then commit or roll back with
   * the caller's own rows, as containerd's content commit moves a blob from ingest to content in one bolt
   * transaction. Undefined otherwise, and then the caller uses addLeaseResource and removeLeaseResource.
   */
  leaseResourcesIn?(db: Db): LeaseResourcesIn | undefined;
  close(): void;
}

/** Lease resource changes inside a transaction (see MetadataClient.leaseResourcesIn). */
export interface LeaseResourcesIn {
  /** addLeaseResource, inside `tx`: rejects as it does (not_found for an unknown lease). */
  add(tx: Queryable, ctx: RequestContext, type: string, id: string): Promise<void>;
  /**
   * removeLeaseResource, inside `tx`: a lease or resource that is not there is no error. A failed statement
   * rejects, since it has aborted the transaction.
   */
  remove(tx: Queryable, ctx: RequestContext, type: string, id: string): Promise<void>;
}

/** For a service running without metadata (its own tests): nothing to register. */
export const noMetadata: MetadataClient = {
  ensureNamespace: async () => undefined,
  addLeaseResource: async () => undefined,
  removeLeaseResource: async () => undefined,
  close: () => undefined,
};

/**
 * The metadata RPCs a MetadataClient is made of, each rejecting as the RPC does: over gRPC
 * (`remoteMetadataCalls`), or straight to metadata's stores when it runs in the same process.
 */
export interface MetadataCalls {
  /** Namespaces.Create of `name` without labels. */
  createNamespace(ctx: RequestContext, name: string): Promise<void>;
  /** Leases.AddResource, in the namespace of `ctx`. */
  addLeaseResource(ctx: RequestContext, lease: string, resource: { id: string; type: string }): Promise<void>;
  /** Leases.DeleteResource, in the namespace of `ctx`. */
  deleteLeaseResource(ctx: RequestContext, lease: string, resource: { id: string; type: string }): Promise<void>;
  /** The same two inside a transaction on `db`, when metadata's records are in `db` (in process only). */
  inTransaction?: {
    readonly db: () => Db | undefined;
    addLeaseResource(
      tx: Queryable,
      ctx: RequestContext,
      lease: string,
      resource: { id: string; type: string },
    ): Promise<void>;
    deleteLeaseResource(
      tx: Queryable,
      ctx: RequestContext,
      lease: string,
      resource: { id: string; type: string },
    ): Promise<void>;
  };
  close(): void;
}

const callTimeoutMs = 10_000;
/** Short-lived: a namespace deleted once empty must be recreated by the next resource made in it. */
const namespaceKnownForMs = 2_000;

/** A MetadataClient over metadata's public gRPC API at `address` (see remoteMetadataCalls). */
export function remoteMetadata(address: string, log: Logger): MetadataClient {
  return metadataClient(remoteMetadataCalls(address), log);
}

/**
 * Metadata's Namespaces and Leases RPCs at `address`. The channel connects on first use, so a node may pass
 * its own socket before it listens.
 */
export function remoteMetadataCalls(address: string): MetadataCalls {
  const namespaces = dial(NamespacesClient, address);
  const leases = dial(LeasesClient, address);
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

/** The MetadataClient contract (namespace ensuring, lease attachment and its tolerances) over `calls`. */
export function metadataClient(calls: MetadataCalls, log: Logger): MetadataClient {
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
    leaseResourcesIn(db) {
      const inTx = calls.inTransaction;
      if (!inTx || inTx.db() !== db) return undefined;
      return {
        async add(tx, ctx, type, id) {
          if (ctx.lease) await inTx.addLeaseResource(tx, ctx, ctx.lease, { id, type });
        },
        async remove(tx, ctx, type, id) {
          const lease = ctx.lease;
          if (!lease) return;
          try {
            await inTx.deleteLeaseResource(tx, ctx, lease, { id, type });
          } catch (e) {
            // Refused before any statement ran (no such lease, a resource it cannot hold): nothing to undo.
            const code = codeOf(e);
            if (code !== ErrorCode.NotFound && code !== ErrorCode.InvalidArgument && code !== ErrorCode.NotImplemented)
              throw e;
            ctx.log.debug('detaching from lease failed', { lease, type, id, err: e });
          }
        },
      };
    },
    close: () => calls.close(),
  };
}

/** What a task needs of its container record. */
export interface ContainerRecord {
  readonly id: string;
  readonly runtime: string;
  /** The OCI runtime spec as the client stored it (JSON bytes of the Any). */
  readonly spec: Buffer | undefined;
  readonly specTypeUrl: string;
}

/** The container records tasks reads from metadata. */
export interface ContainerRecords {
  /** The container, or metadata's not_found (`container "x" in namespace "y": not found`). */
  get(ctx: RequestContext, id: string): Promise<ContainerRecord>;
  close(): void;
}

/** The fields read from a container as metadata returns it, on the wire or from its domain layer alike. */
export interface ContainerFields {
  readonly id: string;
  readonly runtime?: { readonly name: string } | undefined;
  readonly spec?: { readonly typeUrl: string; readonly value: Uint8Array } | undefined;
}

/** Containers.Get: rejects as the RPC does. */
export type GetContainer = (ctx: RequestContext, id: string) => Promise<ContainerFields | undefined>;

/** Metadata's Containers API at `address` (split mode; all-in-one calls metadata in process, see localContainers). */
export function remoteContainers(address: string): ContainerRecords {
  const client = dial(ContainersGrpcClient, address);
  const get: GetContainer = async (ctx, id) => {
    const res = await invoke<GetContainerResponse>(
      (md, opts, cb) => client.get({ id }, md, { ...opts, deadline: Date.now() + 30_000 }, cb),
      ctx,
    );
    return res.container;
  };
  return { get: recordGetter(get), close: () => client.close() };
}

/** Container records from a metadata in this process; `get` must answer and fail as Containers.Get does. */
export function localContainers(get: GetContainer): ContainerRecords {
  return { get: recordGetter(get), close: () => undefined };
}

/** Asks without the request's lease, which a read of a container record has no use for. */
function recordGetter(get: GetContainer): ContainerRecords['get'] {
  return async (ctx, id) => {
    const c = await get(withoutLease(ctx), id);
    const spec = c?.spec?.value;
    return {
      id: c?.id ?? id,
      runtime: c?.runtime?.name ?? '',
      spec: spec && Buffer.from(spec.buffer, spec.byteOffset, spec.byteLength),
      specTypeUrl: c?.spec?.typeUrl ?? '',
    };
  };
}

/**
 * All-in-one: how tasks and content reach metadata when it runs in the same process, calling its stores
 * instead of gRPC over the node's own socket. Each call behaves as the RPC would (`localCall`): same context,
 * same errors. Metadata is built after the modules that use it (it asks them about namespace usage), so it is
 * bound afterwards, before the node serves; a call before that fails unavailable, as an RPC to a socket that
 * does not listen yet would.
 */
export interface InProcessMetadata {
  /** `db`: the database metadata's stores keep their records in (see MetadataClient.leaseResourcesIn). */
  bind(stores: Pick<MetadataStores, 'namespaces' | 'leases' | 'containers'>, db?: Db): void;
  /** For tasks: Containers.Get. */
  readonly containers: ContainerRecords;
  /** For content (and snapshots): Namespaces.Create, Leases.AddResource and DeleteResource. */
  client(log: Logger): MetadataClient;
}

export function inProcessMetadata(): InProcessMetadata {
  let bound: Pick<MetadataStores, 'namespaces' | 'leases' | 'containers'> | undefined;
  let boundDb: Db | undefined;
  const stores = (): Pick<MetadataStores, 'namespaces' | 'leases' | 'containers'> => {
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
    inTransaction: {
      db: () => boundDb,
      addLeaseResource: (tx, ctx, lease, resource) =>
        localCall(ctx, (c) => stores().leases.addResource(c, lease, resource, tx)),
      deleteLeaseResource: (tx, ctx, lease, resource) =>
        localCall(ctx, (c) => stores().leases.deleteResource(c, lease, resource, tx)),
    },
    close: () => undefined,
  };
  return {
    bind: (s, db) => {
      bound = s;
      boundDb = db;
    },
    containers: localContainers((ctx, id) => localCall(ctx, (c) => stores().containers.get(c, id))),
    client: (log) => metadataClient(calls, log),
  };
}
