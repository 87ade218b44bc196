import { readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type RequestContext, requireNamespace } from '@berth/common/context';
import { type Db, isForeignKeyViolation, type Queryable } from '@berth/common/db';
import {
  alreadyExists,
  failedPrecondition,
  hasErrno,
  invalidArgument,
  isAlreadyExists,
  notFound,
  wrap,
} from '@berth/common/errors';
import { adaptorFromObject, alwaysPresent, parseFilters } from '@berth/common/filters';
import { holdCollectionLockShared } from '@berth/common/gc-lock';
import { validateLabels } from '@berth/common/labels';
import { enqueue } from '@berth/common/outbox';
import type { MetadataClient } from '@berth/metadata/client';
import { type SnapshotRecord, SnapshotsRepo } from '../db/snapshots-repo.js';
import type { EncodedEvent, SnapshotEvents } from '../events.js';
import { diskUsage } from './disk-usage.js';
import type { Driver } from './driver.js';
import { NodeIndex } from './node-index.js';
import { Kind, type Mount, type Snapshotter, type Usage } from './types.js';

export interface SnapshotterDeps {
  readonly db: Db;
  /** This node's identity: records of other nodes sharing the database are invisible here. */
  readonly node: string;
  /** This node's name, for messages about snapshots held by other nodes. */
  readonly nodeName: string;
  readonly driver: Driver;
  readonly events: SnapshotEvents;
  /** Namespaces and leases live in metadata; absent in tests that run snapshots alone. */
  readonly metadata: MetadataClient | undefined;
  /** Called after a commit that enqueued events. */
  readonly onCommit: () => void;
}

const schema = 'snapshots';

const doesNotExist = (key: string): Error => notFound(`snapshot ${key} does not exist`);

function validateSnapshotLabels(labels: Readonly<Record<string, string>>): void {
  try {
    validateLabels(labels);
  } catch (e) {
    throw wrap(e, 'info.Labels');
  }
}

/**
 * A snapshotter whose records live in Postgres (one row per node, snapshotter, namespace and key), read
 * from this node's in-memory index of them (see NodeIndex).
 */
export async function createSnapshotter(deps: SnapshotterDeps): Promise<Snapshotter> {
  const { db, node, driver } = deps;
  const name = driver.name;
  const index = await NodeIndex.load(db, node, name);
  const repo = new SnapshotsRepo(db, node, name);
  // Cleanup removes directories without a committed row; creations place their directory before their
  // row commits, so the two never run at the same time.
  const inflight = new Set<Promise<unknown>>();
  const removals = new Set<Promise<unknown>>();
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

  /**
   * A snapshot this node lacks: not found, unless other nodes hold it (a container created on another node),
   * which is a failed precondition naming them, so that a task started on the wrong node fails at once.
   */
  const missingHere = async (ns: string, key: string): Promise<Error> => {
    const holders = await repo.holders(ns, key);
    if (holders.length === 0) return doesNotExist(key);
    const where = `${holders.length === 1 ? 'node' : 'nodes'} ${holders.join(', ')}`;
    return failedPrecondition(
      `snapshot ${key} is on ${where}, not on this node (${deps.nodeName}): use that node's socket`,
    );
  };
  const emit = (tx: Queryable, ns: string, e: EncodedEvent): Promise<void> =>
    enqueue(tx, schema, { namespace: ns, topic: e.topic, typeUrl: e.typeUrl, payload: e.payload });

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
    if (index.get(ns, key)) throw alreadyExists(`snapshot ${JSON.stringify(key)}`);
    const parentRow = parent === '' ? undefined : index.get(ns, parent);
    if (parent !== '') {
      if (!parentRow) throw notFound(`parent snapshot ${parent} does not exist`);
      if (parentRow.kind !== Kind.Committed) {
        throw invalidArgument(`failed to create snapshot: parent ${JSON.stringify(parent)} is not committed snapshot`);
      }
    }
    await deps.metadata?.ensureNamespace(ctx, ns);
    // Metadata in this process on this database: the lease takes the snapshot in the transaction that makes it.
    const leases = deps.metadata?.leaseResourcesIn?.(db);
    if (!leases) await deps.metadata?.addLeaseResource(ctx, `snapshots/${name}`, key);

    // Committed snapshots never change, so the parent chain read here is the one the row will point at.
    const parentIds = index.chain(parentRow?.id ?? null);
    const td = await driver.stage(kind, parentIds);
    let placed: string | undefined;
    let renamed = false;
    try {
      const row = await db.transaction(async (tx) => {
        // A child names its parent: it must not appear between a collection's mark and its sweep.
        await holdCollectionLockShared(tx);
        await leases?.add(tx, ctx, `snapshots/${name}`, key);
        const row = await repo.insert(tx, ns, key, kind, parentRow?.id ?? null, labels);
        if (kind === Kind.Active) await emit(tx, ns, deps.events.prepared(key, parent));
        placed = driver.path(row.id);
        await rename(td, placed);
        renamed = true;
        return row;
      });
      index.put(row);
      const id = row.id;
      if (kind === Kind.Active) deps.onCommit();
      return driver.mounts({ id, kind, parentIds });
    } catch (e) {
      await rm(placed ?? td, { recursive: true, force: true });
      if (isAlreadyExists(e)) throw alreadyExists(`snapshot ${JSON.stringify(key)}`, e);
      // The parent was removed after the check above.
      if (isForeignKeyViolation(e)) throw notFound(`parent snapshot ${parent} does not exist`);
      throw e;
    } finally {
      if (!renamed) await rm(td, { recursive: true, force: true });
    }
  };

  const snapshotter: Snapshotter = {
    name,
    prepare: (ctx, key, parent, labels) => track(() => create(ctx, Kind.Active, key, parent, labels)),
    view: (ctx, key, parent, labels) => track(() => create(ctx, Kind.View, key, parent, labels)),

    async mounts(ctx, key) {
      const ns = requireNamespace(ctx);
      const r = index.get(ns, key);
      if (!r) throw await missingHere(ns, key);
      if (r.kind === Kind.Committed) {
        throw failedPrecondition(`failed to get active mount: requested snapshot ${key} not active or view`);
      }
      return driver.mounts({ id: r.id, kind: r.kind, parentIds: index.chain(r.parentId) });
    },

    async commit(ctx, commitName, key, labels) {
      const ns = requireNamespace(ctx);
      if (commitName === '') throw invalidArgument('snapshot name must not be empty');
      validateSnapshotLabels(labels);
      const active = index.get(ns, key);
      if (!active) throw doesNotExist(key);
      if (active.kind !== Kind.Active) {
        throw failedPrecondition(`failed to commit snapshot: snapshot ${JSON.stringify(key)} is not active`);
      }
      if (index.get(ns, commitName)) throw alreadyExists(`snapshot ${JSON.stringify(commitName)}`);
      // Metadata in this process on this database: the lease takes the name in the transaction that commits it.
      const leases = deps.metadata?.leaseResourcesIn?.(db);
      if (!leases) await deps.metadata?.addLeaseResource(ctx, `snapshots/${name}`, commitName);
      // Measured before the transaction: an active snapshot being committed is no longer written to.
      const usage = await diskUsage(driver.usagePath(active.id), ctx.signal);
      let committed: SnapshotRecord;
      try {
        committed = await db.transaction(async (tx) => {
          await holdCollectionLockShared(tx);
          await leases?.add(tx, ctx, `snapshots/${name}`, commitName);
          const r = await repo.lock(tx, ns, key);
          if (!r) throw doesNotExist(key);
          if (r.kind !== Kind.Active) {
            throw failedPrecondition(`failed to commit snapshot: snapshot ${JSON.stringify(key)} is not active`);
          }
          const row = await repo.commit(tx, r.id, commitName, labels, usage);
          if (!row) throw doesNotExist(key);
          await emit(tx, ns, deps.events.committed(key, commitName));
          return row;
        });
      } catch (e) {
        if (isAlreadyExists(e)) throw alreadyExists(`snapshot ${JSON.stringify(commitName)}`, e);
        throw e;
      }
      index.put(committed);
      deps.onCommit();
    },

    async remove(ctx, key) {
      const ns = requireNamespace(ctx);
      const r = index.get(ns, key);
      if (!r) throw doesNotExist(key);
      if (index.hasChildren(r.id)) throw failedPrecondition('cannot remove snapshot with child');
      const id = r.id;
      try {
        await db.transaction(async (tx) => {
          // A child committed meanwhile makes the foreign key refuse the delete (caught below).
          if (!(await repo.delete(tx, id))) throw doesNotExist(key);
          await emit(tx, ns, deps.events.removed(key));
        });
      } catch (e) {
        if (isForeignKeyViolation(e)) throw failedPrecondition('cannot remove snapshot with child');
        throw e;
      }
      index.remove(id);
      deps.onCommit();
      // After the commit the key is gone for good; freeing the bytes need not delay the caller. A failure is
      // logged, and Cleanup retries.
      const removal = rm(driver.path(id), { recursive: true, force: true })
        .catch((e: unknown) => ctx.log.warn('failed to remove snapshot directory', { path: driver.path(id), err: e }))
        .finally(() => removals.delete(removal));
      removals.add(removal);
    },

    async idle() {
      while (removals.size > 0) await Promise.allSettled([...removals]);
    },

    async stat(ctx, key) {
      const ns = requireNamespace(ctx);
      const r = index.get(ns, key);
      if (!r) throw doesNotExist(key);
      if (ctx.lease) {
        // A client that finds a snapshot under a lease goes on to build on it (ctr's unpack: Stat the chain ID,
        // then Prepare its child). Holding it by the lease first makes what Stat reports stay true: a collection
        // that ran before the hold may have removed it, so the row itself is checked after (containerd #3787).
        await deps.metadata?.addLeaseResource(ctx, `snapshots/${name}`, key);
        if (!(await repo.exists(ns, key))) throw doesNotExist(key);
      }
      return index.info(r);
    },

    async update(ctx, info, paths) {
      const ns = requireNamespace(ctx);
      if (info.name === '') throw invalidArgument('snapshot name must not be empty');
      const updated = await db.transaction(async (tx) => {
        await holdCollectionLockShared(tx);
        const r = await repo.lock(tx, ns, info.name);
        if (!r) throw doesNotExist(info.name);
        let labels: Record<string, string> = { ...r.labels };
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
        const row = await repo.setLabels(tx, r.id, labels);
        if (!row) throw doesNotExist(info.name);
        return row;
      });
      index.put(updated);
      return index.info(updated);
    },

    async list(ctx, filters) {
      const ns = requireNamespace(ctx);
      let filter: ReturnType<typeof parseFilters>;
      try {
        filter = parseFilters([...filters]);
      } catch (e) {
        throw invalidArgument((e as Error).message, e);
      }
      return index
        .list(ns)
        .map((r) => index.info(r))
        .filter((i) =>
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
      const r = index.get(ns, key);
      if (!r) throw doesNotExist(key);
      if (r.kind === Kind.Active) return diskUsage(driver.usagePath(r.id), ctx.signal);
      return { size: r.size, inodes: r.inodes } satisfies Usage;
    },

    async reconcile(ctx) {
      // Only removals: a creation commits its row before it enters the index, so an id in the index and not
      // in the table was deleted, and an id in the table is never missed by a concurrent creation.
      const present = await repo.ids();
      let forgotten = 0;
      for (const id of index.ids()) {
        if (!present.has(id)) {
          index.remove(id);
          forgotten++;
        }
      }
      await snapshotter.cleanup(ctx);
      return forgotten;
    },

    async cleanup(ctx) {
      while (cleaning) await cleaning;
      const run = (async () => {
        await Promise.allSettled([...inflight, ...removals]);
        const ids = new Set([...index.ids()].map(String));
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
  return snapshotter;
}
