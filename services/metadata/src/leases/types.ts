import type { RequestContext } from '@berth/common/context';
import type { Queryable } from '@berth/common/db';

export interface Lease {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly createdAt: Date;
}

/**
 * A resource a lease keeps alive, named as containerd names them: type `content` (id = digest), `ingests`
 * (id = ingest ref) or `snapshots/<snapshotter>` (id = snapshot key).
 */
export interface LeaseResource {
  readonly id: string;
  readonly type: string;
}

/** containerd's lease manager (`metadata/leases.go`), per namespace of the request context. */
export interface LeaseStore {
  /**
   * Creates a lease; an empty id gets a random one (`<nanoseconds>-<base64url of 3 bytes>`). already_exists
   * when taken. Labels carry `containerd.io/gc.expire` (RFC 3339) for leases that expire. Brings the
   * namespace into being.
   */
  create(ctx: RequestContext, id: string, labels: Readonly<Record<string, string>>): Promise<Lease>;
  /** not_found when absent; its resources go with it. */
  delete(ctx: RequestContext, id: string): Promise<void>;
  /** Leases matching any of `filters` (fields `id`, `labels.*`; invalid_argument when malformed), by id. */
  list(ctx: RequestContext, filters: readonly string[]): Promise<Lease[]>;
  /**
   * Idempotent. not_found when the lease is absent; invalid_argument for a malformed type or content digest;
   * not_implemented for an unknown type. Inside `tx` when given: a transaction of the caller's on this
   * store's own database, which then holds the collection lock (see gc-lock) until it ends.
   */
  addResource(ctx: RequestContext, lease: string, resource: LeaseResource, tx?: Queryable): Promise<void>;
  /** Removes the reference if present; not_found when the lease is absent. Inside `tx` when given. */
  deleteResource(ctx: RequestContext, lease: string, resource: LeaseResource, tx?: Queryable): Promise<void>;
  /** Content first, then ingests, then snapshots by snapshotter; not_found when the lease is absent. */
  listResources(ctx: RequestContext, lease: string): Promise<LeaseResource[]>;
}
