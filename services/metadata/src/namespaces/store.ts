import type { Db, Queryable } from '@berth/common/db';
import { alreadyExists, failedPrecondition, invalidArgument, isAlreadyExists, notFound } from '@berth/common/errors';
import { validateIdentifier } from '@berth/common/identifiers';
import { validateLabels, withoutEmpty } from '@berth/common/labels';
import type { NamespaceUsage } from '@berth/common/namespace-usage';
import type { RowCache } from '@berth/common/row-cache';
import {
  deleteNamespace,
  insertNamespace,
  listNamespaces,
  lockNamespace,
  namespaceHolds,
  namespaceLabels,
  putNamespaceLabels,
} from '../db/namespaces-repo.js';
import { enqueueEvent } from '../outbox.js';
import type { Namespace, NamespaceEvents, NamespaceStore } from './types.js';

export interface NamespaceStoreDeps {
  readonly db: Db;
  readonly events: NamespaceEvents;
  /** Every owner of namespaced resources, this service's own tables included. */
  readonly usage: readonly NamespaceUsage[];
  /** Called after a commit that enqueued events. */
  readonly onCommit: () => void;
  /**
   * Get's answers by name, an absent namespace's (no labels) included: a row inserted, as any write, notifies.
   * Kept coherent by the caller (listenRowCache); writes here forget theirs.
   */
  readonly rows: RowCache<Namespace>;
}

export function createNamespaceStore(deps: NamespaceStoreDeps): NamespaceStore {
  const { db, rows } = deps;
  /** A transaction that writes the namespace `name`: its cached answer is forgotten around it. */
  const writeRow = <T>(name: string, fn: (tx: Queryable) => Promise<T>): Promise<T> =>
    rows.writing(name, () => db.transaction(fn));

  return {
    async get(_ctx, name) {
      validateIdentifier(name);
      const ns = await rows.read(name, async () => {
        return { name, labels: (await namespaceLabels(db, name)) ?? {} };
      });
      return ns ?? { name, labels: {} };
    },

    async list() {
      return listNamespaces(db);
    },

    async create(_ctx, ns) {
      validateIdentifier(ns.name);
      validateNamespaceLabels(ns.labels);
      const labels = withoutEmpty(ns.labels);
      try {
        await writeRow(ns.name, async (tx) => {
          await insertNamespace(tx, ns.name, labels);
          await enqueueEvent(tx, ns.name, deps.events.created({ name: ns.name, labels }));
        });
      } catch (e) {
        if (isAlreadyExists(e)) throw alreadyExists(`namespace ${JSON.stringify(ns.name)}`, e);
        throw e;
      }
      deps.onCommit();
      return { name: ns.name, labels };
    },

    async update(_ctx, ns, paths) {
      validateIdentifier(ns.name);
      for (const p of paths) {
        if (!p.startsWith('labels.')) throw invalidArgument(`cannot update ${JSON.stringify(p)} field`);
      }
      validateNamespaceLabels(ns.labels);
      const result = await writeRow(ns.name, async (tx) => {
        const current = await namespaceLabels(tx, ns.name, true);
        let labels: Record<string, string>;
        if (paths.length > 0) {
          labels = { ...(current ?? {}) };
          for (const p of paths) {
            const key = p.slice('labels.'.length);
            const value = ns.labels[key];
            if (value === undefined || value === '') delete labels[key];
            else labels[key] = value;
          }
        } else {
          labels = withoutEmpty(ns.labels);
        }
        await putNamespaceLabels(tx, ns.name, labels);
        const updated = { name: ns.name, labels };
        await enqueueEvent(tx, ns.name, deps.events.updated(updated));
        return updated;
      });
      deps.onCommit();
      return result;
    },

    async delete(ctx, name) {
      validateIdentifier(name);
      const elsewhere = (await Promise.all(deps.usage.map((u) => u.resourcesIn(ctx, name)))).flat();
      await writeRow(name, async (tx) => {
        // The row lock keeps images and containers from being created in it until this commits.
        const exists = await lockNamespace(tx, name);
        const held = [...(await ownResources(tx, name)), ...elsewhere].sort((a, b) => rank(a) - rank(b));
        if (held.length > 0) {
          throw failedPrecondition(
            `namespace ${JSON.stringify(name)} must be empty, but it still has ${held.join(', ')}`,
          );
        }
        if (!exists) throw notFound(`namespace ${JSON.stringify(name)}`);
        await deleteNamespace(tx, name);
        await enqueueEvent(tx, name, deps.events.deleted(name));
      });
      deps.onCommit();
    },
  };
}

/** What this service's own tables still hold in a namespace, worded as containerd's listNs does. */
async function ownResources(tx: Queryable, name: string): Promise<string[]> {
  const holds = await namespaceHolds(tx, name);
  return [...(holds.images ? ['images'] : []), ...(holds.containers ? ['containers'] : [])];
}

/** containerd lists what a namespace holds in this order: images, blobs, containers, snapshots. */
function rank(kind: string): number {
  if (kind === 'images') return 0;
  if (kind === 'blobs') return 1;
  if (kind === 'containers') return 2;
  return 3;
}

function validateNamespaceLabels(labels: Readonly<Record<string, string>>): void {
  try {
    validateLabels(labels);
  } catch (e) {
    throw invalidArgument(`namespace.Labels: ${(e as Error).message.replace(/: invalid argument$/, '')}`, e);
  }
}
