import { readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type RequestContext, requireNamespace } from '@berth/common/context';
import type { Db, Queryable } from '@berth/common/db';
import {
  alreadyExists,
  failedPrecondition,
  hasErrno,
  invalidArgument,
  isAlreadyExists,
  notFound,
  wrap,
} from '@berth/common/errors';
import { adaptorFromObject, alwaysPresent, parseFilters } from '@berth/common/filters/index';
import { validateLabels } from '@berth/common/labels';
import type { MetadataPeer } from '@berth/common/metadata-peer';
import { enqueue } from '@berth/common/outbox';
import type { EncodedEvent, SnapshotEvents } from '../events.js';
import { diskUsage } from './disk-usage.js';
import type { Driver } from './driver.js';
import { type Info, Kind, type Mount, type Snapshotter, type Usage } from './types.js';

export interface SnapshotterDeps {
  readonly db: Db;
  /** This node's identity: records of other nodes sharing the database are invisible here. */
  readonly node: string;
  readonly driver: Driver;
  readonly events: SnapshotEvents;
  /** Namespaces and leases live in metadata; absent in tests that run snapshots alone. */
  readonly metadata: MetadataPeer | undefined;
  /** Called after a commit that enqueued events. */
  readonly onCommit: () => void;
}

interface Row {
  id: number | string;
  key: string;
  kind: Kind;
  parent_id: number | string | null;
  parent_key: string | null;
  labels: Record<string, string> | string;
  size: number | string;
  inodes: number | string;
  created_at: Date | string;
  updated_at: Date | string;
}

const schema = 'snapshots';
const selectRow = `SELECT s.id, s.key, s.kind, s.parent_id, p.key AS parent_key, s.labels, s.size, s.inodes,
  s.created_at, s.updated_at
  FROM snapshots.snapshots s LEFT JOIN snapshots.snapshots p ON p.id = s.parent_id`;

const toDate = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));
const parseLabels = (v: Record<string, string> | string): Record<string, string> =>
  typeof v === 'string' ? (JSON.parse(v) as Record<string, string>) : v;

function toInfo(r: Row): Info {
  return {
    name: r.key,
    parent: r.parent_key ?? '',
    kind: r.kind,
    labels: parseLabels(r.labels),
    createdAt: toDate(r.created_at),
    updatedAt: toDate(r.updated_at),
  };
}

const doesNotExist = (key: string): Error => notFound(`snapshot ${key} does not exist`);

function validateSnapshotLabels(labels: Readonly<Record<string, string>>): void {
  try {
    validateLabels(labels);
  } catch (e) {
    throw wrap(e, 'info.Labels');
  }
}

/** A snapshotter whose records live in Postgres (one row per node, snapshotter, namespace and key). */
export function createSnapshotter(deps: SnapshotterDeps): Snapshotter {
  const { db, node, driver } = deps;
  const name = driver.name;
  // Cleanup removes directories without a committed row; creations place their directory before their
  // row commits, so the two never run at the same time.
  const inflight = new Set<Promise<unknown>>();
  let cleaning: Promise<void> | undefined;
  const track = async <T>(fn: () => Promise<T>): Promise<T> => {
    while (cleaning) await cleaning;
    const p = fn();
    inflight.add(p);
    try {
      return await p;
    } finally {
      inflight.delete(p);
    }
  };

  const scope = (ns: string): unknown[] => [node, name, ns];
  const emit = (tx: Queryable, ns: string, e: EncodedEvent): Promise<void> =>
    enqueue(tx, schema, { namespace: ns, topic: e.topic, typeUrl: e.typeUrl, payload: e.payload });

  const find = async (q: Queryable, ns: string, key: string, lock = false): Promise<Row | undefined> => {
    const rows = await q.query<Row & Record<string, unknown>>(
      `${selectRow} WHERE s.node = $1 AND s.snapshotter = $2 AND s.namespace = $3 AND s.key = $4${lock ? ' FOR UPDATE OF s' : ''}`,
      [...scope(ns), key],
    );
    return rows[0];
  };

  /** Ids of the committed chain below snapshot `id`, nearest first. */
  const ancestors = async (q: Queryable, parentId: number | null): Promise<number[]> => {
    if (parentId === null) return [];
    const rows = await q.query<{ id: number | string }>(
      `WITH RECURSIVE chain (id, parent_id, depth) AS (
         SELECT id, parent_id, 0 FROM snapshots.snapshots WHERE id = $1
         UNION ALL
         SELECT s.id, s.parent_id, c.depth + 1 FROM snapshots.snapshots s JOIN chain c ON s.id = c.parent_id
       ) SELECT id FROM chain ORDER BY depth`,
      [parentId],
    );
    return rows.map((r) => Number(r.id));
  };

  const layoutOf = async (q: Queryable, r: Row) => ({
    id: Number(r.id),
    kind: r.kind,
    parentIds: await ancestors(q, r.parent_id === null ? null : Number(r.parent_id)),
  });

  const create = async (
    ctx: RequestContext,
    kind: typeof Kind.Active | typeof Kind.View,
    key: string,
    parent: string,
    labels: Readonly<Record<string, string>>,
  ): Promise<Mount[]> => {
    const ns = requireNamespace(ctx);
    if (key === '') throw invalidArgument('snapshot key must not be empty');
    validateSnapshotLabels(labels);
    if (await find(db, ns, key)) throw alreadyExists(`snapshot ${JSON.stringify(key)}`);
    let parentRow: Row | undefined;
    if (parent !== '') {
      parentRow = await find(db, ns, parent);
      if (!parentRow) throw notFound(`parent snapshot ${parent} does not exist`);
      if (parentRow.kind !== Kind.Committed) {
        throw invalidArgument(`failed to create snapshot: parent ${JSON.stringify(parent)} is not committed snapshot`);
      }
    }
    await deps.metadata?.ensureNamespace(ctx, ns);
    await deps.metadata?.addLeaseResource(ctx, `snapshots/${name}`, key);

    // Committed snapshots never change, so the parent chain read here is the one the row will point at.
    const parentIds = parentRow ? await ancestors(db, Number(parentRow.id)) : [];
    const td = await driver.stage(kind, parentIds);
    let placed: string | undefined;
    try {
      const id = await db.transaction(async (tx) => {
        const [row] = await tx.query<{ id: number | string }>(
          `INSERT INTO snapshots.snapshots (node, snapshotter, namespace, key, kind, parent_id, labels)
           VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb) RETURNING id`,
          [...scope(ns), key, kind, parentRow ? Number(parentRow.id) : null, JSON.stringify(labels)],
        );
        if (!row) throw new Error('insert returned no id');
        const id = Number(row.id);
        if (kind === Kind.Active) await emit(tx, ns, deps.events.prepared(key, parent));
        placed = driver.path(id);
        await rename(td, placed);
        return id;
      });
      if (kind === Kind.Active) deps.onCommit();
      return driver.mounts({ id, kind, parentIds });
    } catch (e) {
      await rm(placed ?? td, { recursive: true, force: true });
      if (isAlreadyExists(e)) throw alreadyExists(`snapshot ${JSON.stringify(key)}`, e);
      throw e;
    } finally {
      await rm(td, { recursive: true, force: true });
    }
  };

  return {
    name,
    prepare: (ctx, key, parent, labels) => track(() => create(ctx, Kind.Active, key, parent, labels)),
    view: (ctx, key, parent, labels) => track(() => create(ctx, Kind.View, key, parent, labels)),

    async mounts(ctx, key) {
      const ns = requireNamespace(ctx);
      const r = await find(db, ns, key);
      if (!r) throw doesNotExist(key);
      if (r.kind === Kind.Committed) {
        throw failedPrecondition(`failed to get active mount: requested snapshot ${key} not active or view`);
      }
      return driver.mounts(await layoutOf(db, r));
    },

    async commit(ctx, commitName, key, labels) {
      const ns = requireNamespace(ctx);
      if (commitName === '') throw invalidArgument('snapshot name must not be empty');
      validateSnapshotLabels(labels);
      const active = await find(db, ns, key);
      if (!active) throw doesNotExist(key);
      if (active.kind !== Kind.Active) {
        throw failedPrecondition(`failed to commit snapshot: snapshot ${JSON.stringify(key)} is not active`);
      }
      if (await find(db, ns, commitName)) throw alreadyExists(`snapshot ${JSON.stringify(commitName)}`);
      await deps.metadata?.addLeaseResource(ctx, `snapshots/${name}`, commitName);
      // Measured before the transaction: an active snapshot being committed is no longer written to.
      const usage = await diskUsage(driver.usagePath(Number(active.id)), ctx.signal);
      try {
        await db.transaction(async (tx) => {
          const r = await find(tx, ns, key, true);
          if (!r) throw doesNotExist(key);
          if (r.kind !== Kind.Active) {
            throw failedPrecondition(`failed to commit snapshot: snapshot ${JSON.stringify(key)} is not active`);
          }
          await tx.query(
            `UPDATE snapshots.snapshots SET key = $2, kind = 'committed', labels = $3::text::jsonb, size = $4, inodes = $5,
               created_at = now(), updated_at = now() WHERE id = $1`,
            [Number(r.id), commitName, JSON.stringify(labels), usage.size, usage.inodes],
          );
          await emit(tx, ns, deps.events.committed(key, commitName));
        });
      } catch (e) {
        if (isAlreadyExists(e)) throw alreadyExists(`snapshot ${JSON.stringify(commitName)}`, e);
        throw e;
      }
      deps.onCommit();
    },

    async remove(ctx, key) {
      const ns = requireNamespace(ctx);
      const id = await db.transaction(async (tx) => {
        const r = await find(tx, ns, key, true);
        if (!r) throw doesNotExist(key);
        const [child] = await tx.query('SELECT 1 FROM snapshots.snapshots WHERE parent_id = $1 LIMIT 1', [
          Number(r.id),
        ]);
        if (child) throw failedPrecondition('cannot remove snapshot with child');
        await tx.query('DELETE FROM snapshots.snapshots WHERE id = $1', [Number(r.id)]);
        await emit(tx, ns, deps.events.removed(key));
        return Number(r.id);
      });
      deps.onCommit();
      // After the commit the key is gone for good: a failure to free the bytes is logged, and Cleanup retries.
      try {
        await rm(driver.path(id), { recursive: true, force: true });
      } catch (e) {
        ctx.log.warn('failed to remove snapshot directory', { path: driver.path(id), err: e });
      }
    },

    async stat(ctx, key) {
      const ns = requireNamespace(ctx);
      const r = await find(db, ns, key);
      if (!r) throw doesNotExist(key);
      return toInfo(r);
    },

    async update(ctx, info, paths) {
      const ns = requireNamespace(ctx);
      if (info.name === '') throw invalidArgument('snapshot name must not be empty');
      return db.transaction(async (tx) => {
        const r = await find(tx, ns, info.name, true);
        if (!r) throw doesNotExist(info.name);
        let labels: Record<string, string> = { ...parseLabels(r.labels) };
        if (paths.length === 0) labels = { ...info.labels };
        for (const p of paths) {
          if (p.startsWith('labels.')) {
            const k = p.slice('labels.'.length);
            const v = info.labels[k];
            // containerd stores the (possibly empty) value; an empty label is then dropped on write.
            if (v === undefined || v === '') delete labels[k];
            else labels[k] = v;
          } else if (p === 'labels') {
            labels = { ...info.labels };
          } else {
            throw invalidArgument(`cannot update ${JSON.stringify(p)} field on snapshot ${JSON.stringify(info.name)}`);
          }
        }
        labels = Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== ''));
        validateSnapshotLabels(labels);
        await tx.query('UPDATE snapshots.snapshots SET labels = $2::text::jsonb, updated_at = now() WHERE id = $1', [
          Number(r.id),
          JSON.stringify(labels),
        ]);
        const updated = await find(tx, ns, info.name);
        if (!updated) throw doesNotExist(info.name);
        return toInfo(updated);
      });
    },

    async list(ctx, filters) {
      const ns = requireNamespace(ctx);
      let filter: ReturnType<typeof parseFilters>;
      try {
        filter = parseFilters([...filters]);
      } catch (e) {
        throw invalidArgument((e as Error).message, e);
      }
      const rows = await db.query<Row & Record<string, unknown>>(
        `${selectRow} WHERE s.node = $1 AND s.snapshotter = $2 AND s.namespace = $3 ORDER BY s.key COLLATE "C"`,
        scope(ns),
      );
      return rows.map(toInfo).filter((i) =>
        filter.match(
          adaptorFromObject({
            kind: alwaysPresent(i.kind),
            name: alwaysPresent(i.name),
            parent: alwaysPresent(i.parent),
            labels: i.labels,
          }),
        ),
      );
    },

    async usage(ctx, key) {
      const ns = requireNamespace(ctx);
      const r = await find(db, ns, key);
      if (!r) throw doesNotExist(key);
      if (r.kind === Kind.Active) return diskUsage(driver.usagePath(Number(r.id)), ctx.signal);
      return { size: Number(r.size), inodes: Number(r.inodes) } satisfies Usage;
    },

    async cleanup(ctx) {
      while (cleaning) await cleaning;
      const run = (async () => {
        await Promise.allSettled([...inflight]);
        const ids = new Set(
          (
            await db.query<{ id: number | string }>(
              'SELECT id FROM snapshots.snapshots WHERE node = $1 AND snapshotter = $2',
              [node, name],
            )
          ).map((r) => String(r.id)),
        );
        let entries: string[];
        try {
          entries = await readdir(driver.dir);
        } catch (e) {
          if (hasErrno(e, 'ENOENT')) return;
          throw e;
        }
        for (const entry of entries) {
          if (ids.has(entry)) continue;
          const path = join(driver.dir, entry);
          try {
            await rm(path, { recursive: true, force: true });
          } catch (e) {
            ctx.log.warn('failed to remove directory', { path, err: e });
          }
        }
      })();
      cleaning = run;
      try {
        await run;
      } finally {
        cleaning = undefined;
      }
    },
  };
}
