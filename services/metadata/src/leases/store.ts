import { requireNamespace } from '@berth/common/context';
import type { Db, Queryable } from '@berth/common/db';
import { alreadyExists, isAlreadyExists, notFound } from '@berth/common/errors';
import { adaptorFromObject } from '@berth/common/filters';
import { holdCollectionLockShared } from '@berth/common/gc-lock';
import { withoutEmpty } from '@berth/common/labels';
import { jsonColumn } from '../db/columns.js';
import { compileFilters } from '../filters.js';
import { sortedMap, validateLabelMap } from '../label-maps.js';
import { ensuringNamespace } from '../namespaces/store.js';
import { randomLeaseId } from './id.js';
import { formatLeaseResource, type ParsedResource, parseLeaseResource } from './resource.js';
import type { Lease, LeaseResource, LeaseStore } from './types.js';

export interface LeaseStoreDeps {
  readonly db: Db;
}

interface LeaseRow {
  [column: string]: unknown;
  id: string;
  labels: Record<string, string> | string;
  created_at: Date;
}

const fromRow = (r: LeaseRow): Lease => ({ id: r.id, labels: jsonColumn(r.labels), createdAt: r.created_at });

/** The fields containerd's lease filters see (`metadata/adaptors.go` adaptLease). */
export function leaseAdaptor(l: Lease): ReturnType<typeof adaptorFromObject> {
  return adaptorFromObject({ id: l.id, labels: l.labels });
}

const kindOrder = "CASE kind WHEN 'content' THEN 0 WHEN 'ingests' THEN 1 ELSE 2 END";

export function createLeaseStore(deps: LeaseStoreDeps): LeaseStore {
  const { db } = deps;

  const requireLease = async (q: Queryable, ns: string, id: string): Promise<void> => {
    const rows = await q.query('SELECT 1 FROM metadata.leases WHERE namespace = $1 AND id = $2', [ns, id]);
    if (rows.length === 0) throw notFound(`lease ${JSON.stringify(id)}`);
  };

  /** The parsed resource; an absent lease's not_found comes first, as containerd finds the lease before parsing. */
  const parseFor = async (ns: string, lease: string, resource: LeaseResource): Promise<ParsedResource> => {
    try {
      return parseLeaseResource(resource);
    } catch (e) {
      await requireLease(db, ns, lease);
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
        await db.query(
          `${ensuringNamespace} INSERT INTO metadata.leases (namespace, id, labels, created_at) VALUES ($1, $2, $3::text::jsonb, $4)`,
          [ns, id, JSON.stringify(stored), createdAt],
        );
      } catch (e) {
        if (isAlreadyExists(e)) throw alreadyExists(`lease ${JSON.stringify(id)}`, e);
        throw e;
      }
      return { id, labels: stored, createdAt };
    },

    async delete(ctx, id) {
      const ns = requireNamespace(ctx);
      const rows = await db.query('DELETE FROM metadata.leases WHERE namespace = $1 AND id = $2 RETURNING id', [
        ns,
        id,
      ]);
      if (rows.length === 0) throw notFound(`lease ${JSON.stringify(id)}`);
    },

    async list(ctx, filters) {
      const ns = requireNamespace(ctx);
      const filter = compileFilters(filters);
      const rows = await db.query<LeaseRow>(
        'SELECT id, labels, created_at FROM metadata.leases WHERE namespace = $1 ORDER BY id',
        [ns],
      );
      return rows.map(fromRow).filter((l) => filter.match(leaseAdaptor(l)));
    },

    async addResource(ctx, lease, resource) {
      const ns = requireNamespace(ctx);
      const r = await parseFor(ns, lease, resource);
      // One statement, no transaction: the lease row is locked as the foreign key check would, so a concurrent
      // delete either waits for the resource or leaves no lease to add it to.
      // Under the collection lock: a resource added while a collection runs must survive its sweep.
      const [row] = await db.transaction(async (tx) => {
        await holdCollectionLockShared(tx);
        return tx.query<{ found: boolean }>(
          `WITH lease AS (SELECT 1 FROM metadata.leases WHERE namespace = $1 AND id = $2 FOR KEY SHARE),
              added AS (INSERT INTO metadata.lease_resources (namespace, lease, kind, snapshotter, id)
                        SELECT $1, $2, $3, $4, $5 FROM lease ON CONFLICT DO NOTHING)
         SELECT EXISTS (SELECT 1 FROM lease) AS found`,
          [ns, lease, r.kind, r.snapshotter, r.id],
        );
      });
      if (!row?.found) throw notFound(`lease ${JSON.stringify(lease)}`);
    },

    async deleteResource(ctx, lease, resource) {
      const ns = requireNamespace(ctx);
      const r = await parseFor(ns, lease, resource);
      const [row] = await db.query<{ found: boolean }>(
        `WITH lease AS (SELECT 1 FROM metadata.leases WHERE namespace = $1 AND id = $2),
              removed AS (DELETE FROM metadata.lease_resources
                          WHERE namespace = $1 AND lease = $2 AND kind = $3 AND snapshotter = $4 AND id = $5)
         SELECT EXISTS (SELECT 1 FROM lease) AS found`,
        [ns, lease, r.kind, r.snapshotter, r.id],
      );
      if (!row?.found) throw notFound(`lease ${JSON.stringify(lease)}`);
    },

    async listResources(ctx, lease) {
      const ns = requireNamespace(ctx);
      return db.transaction(async (tx) => {
        await requireLease(tx, ns, lease);
        const rows = await tx.query<{ kind: ParsedResource['kind']; snapshotter: string; id: string }>(
          `SELECT kind, snapshotter, id FROM metadata.lease_resources WHERE namespace = $1 AND lease = $2
           ORDER BY ${kindOrder}, snapshotter, id`,
          [ns, lease],
        );
        return rows.map(formatLeaseResource);
      });
    },
  };
}
