import { requireNamespace } from '@berth/common/context';
import type { Db, Queryable } from '@berth/common/db';
import { alreadyExists, isAlreadyExists, notFound } from '@berth/common/errors';
import { adaptorFromObject } from '@berth/common/filters';
import { holdCollectionLockShared } from '@berth/common/gc-lock';
import { withoutEmpty } from '@berth/common/labels';
import {
  addLeaseResource,
  deleteLease,
  deleteLeaseResource,
  insertLease,
  leaseExists,
  listLeaseResources,
  listLeases,
} from '../db/leases-repo.js';
import { compileFilters } from '../filters.js';
import { sortedMap, validateLabelMap } from '../label-maps.js';
import { randomLeaseId } from './id.js';
import { formatLeaseResource, type ParsedResource, parseLeaseResource } from './resource.js';
import type { Lease, LeaseResource, LeaseStore } from './types.js';

export interface LeaseStoreDeps {
  readonly db: Db;
}

/** The fields containerd's lease filters see (`metadata/adaptors.go` adaptLease). */
export function leaseAdaptor(l: Lease): ReturnType<typeof adaptorFromObject> {
  return adaptorFromObject({ id: l.id, labels: l.labels });
}

export function createLeaseStore(deps: LeaseStoreDeps): LeaseStore {
  const { db } = deps;

  const requireLease = async (q: Queryable, ns: string, id: string): Promise<void> => {
    if (!(await leaseExists(q, ns, id))) throw notFound(`lease ${JSON.stringify(id)}`);
  };

  /** The parsed resource; an absent lease's not_found comes first, as containerd finds the lease before parsing. */
  const parseFor = async (
    q: Queryable,
    ns: string,
    lease: string,
    resource: LeaseResource,
  ): Promise<ParsedResource> => {
    try {
      return parseLeaseResource(resource);
    } catch (e) {
      await requireLease(q, ns, lease);
      throw e;
    }
  };

  return {
    async create(ctx, requested, labels) {
      const ns = requireNamespace(ctx);
      validateLabelMap('lease.Labels', labels);
      const id = requested === '' ? randomLeaseId() : requested;
      const stored = sortedMap(withoutEmpty(labels));
      const createdAt = new Date();
      try {
        await insertLease(db, ns, id, stored, createdAt);
      } catch (e) {
        if (isAlreadyExists(e)) throw alreadyExists(`lease ${JSON.stringify(id)}`, e);
        throw e;
      }
      return { id, labels: stored, createdAt };
    },

    async delete(ctx, id) {
      const ns = requireNamespace(ctx);
      if (!(await deleteLease(db, ns, id))) throw notFound(`lease ${JSON.stringify(id)}`);
    },

    async list(ctx, filters) {
      const ns = requireNamespace(ctx);
      const filter = compileFilters(filters);
      return (await listLeases(db, ns)).filter((l) => filter.match(leaseAdaptor(l)));
    },

    async addResource(ctx, lease, resource, inTx) {
      const ns = requireNamespace(ctx);
      const r = await parseFor(inTx ?? db, ns, lease, resource);
      // Under the collection lock: a resource added while a collection runs must survive its sweep.
      const add = async (tx: Queryable): Promise<boolean> => {
        await holdCollectionLockShared(tx);
        return addLeaseResource(tx, ns, lease, r);
      };
      const found = inTx ? await add(inTx) : await db.transaction(add);
      if (!found) throw notFound(`lease ${JSON.stringify(lease)}`);
    },

    async deleteResource(ctx, lease, resource, inTx) {
      const ns = requireNamespace(ctx);
      const q = inTx ?? db;
      const r = await parseFor(q, ns, lease, resource);
      if (!(await deleteLeaseResource(q, ns, lease, r))) throw notFound(`lease ${JSON.stringify(lease)}`);
    },

    async listResources(ctx, lease) {
      const ns = requireNamespace(ctx);
      return db.transaction(async (tx) => {
        await requireLease(tx, ns, lease);
        return (await listLeaseResources(tx, ns, lease)).map(formatLeaseResource);
      });
    },
  };
}
