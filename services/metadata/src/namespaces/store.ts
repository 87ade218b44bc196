import type { Db, Queryable } from '@berth/common/db';
import { alreadyExists, failedPrecondition, invalidArgument, isAlreadyExists, notFound } from '@berth/common/errors';
import { validateIdentifier } from '@berth/common/identifiers';
import { validateLabels, withoutEmpty } from '@berth/common/labels';
import type { NamespaceUsage } from '@berth/common/namespace-usage';
import type { RowCache } from '@berth/common/row-cache';
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

type LabelRow = { labels: Record<string, string> | string };

const parseLabels = (v: Record<string, string> | string): Record<string, string> =>
  typeof v === 'string' ? (JSON.parse(v) as Record<string, string>) : v;

export function createNamespaceStore(deps: NamespaceStoreDeps): NamespaceStore {
  const { db, rows } = deps;
  /** A transaction that writes the namespace `name`: its cached answer is forgotten around it. */
  const writeRow = <T>(name: string, fn: (tx: Queryable) => Promise<T>): Promise<T> =>
    rows.writing(name, () => db.transaction(fn));

  return {
    async get(_ctx, name) {
      validateIdentifier(name);
      const ns = await rows.read(name, async () => {
        const [row] = await db.query<LabelRow>('SELECT labels FROM metadata.namespaces WHERE name = $1', [name]);
        return { name, labels: row ? parseLabels(row.labels) : {} };
      });
      return ns ?? { name, labels: {} };
    },

    async list() {
      const rows = await db.query<LabelRow & { name: string }>(
        'SELECT name, labels FROM metadata.namespaces ORDER BY name',
      );
      return rows.map((r) => ({ name: r.name, labels: parseLabels(r.labels) }));
    },

    async create(_ctx, ns) {
      validateIdentifier(ns.name);
      validateNamespaceLabels(ns.labels);
      const labels = withoutEmpty(ns.labels);
      try {
        await writeRow(ns.name, async (tx) => {
          await tx.query('INSERT INTO metadata.namespaces (name, labels) VALUES ($1, $2::text::jsonb)', [
            ns.name,
            JSON.stringify(labels),
          ]);
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
        const [row] = await tx.query<LabelRow>('SELECT labels FROM metadata.namespaces WHERE name = $1 FOR UPDATE', [
          ns.name,
        ]);
        let labels: Record<string, string>;
        if (paths.length > 0) {
          labels = { ...(row ? parseLabels(row.labels) : {}) };
          for (const p of paths) {
            const key = p.slice('labels.'.length);
            const value = ns.labels[key];
            if (value === undefined || value === '') delete labels[key];
            else labels[key] = value;
          }
        } else {
          labels = withoutEmpty(ns.labels);
        }
        await tx.query(
          `INSERT INTO metadata.namespaces (name, labels) VALUES ($1, $2::text::jsonb)
           ON CONFLICT (name) DO UPDATE SET labels = EXCLUDED.labels, updated_at = now()`,
          [ns.name, JSON.stringify(labels)],
        );
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
        const [row] = await tx.query('SELECT name FROM metadata.namespaces WHERE name = $1 FOR UPDATE', [name]);
        const held = [...(await ownResources(tx, name)), ...elsewhere].sort((a, b) => rank(a) - rank(b));
        if (held.length > 0) {
          throw failedPrecondition(
            `namespace ${JSON.stringify(name)} must be empty, but it still has ${held.join(', ')}`,
          );
        }
        if (!row) throw notFound(`namespace ${JSON.stringify(name)}`);
        await tx.query('DELETE FROM metadata.namespaces WHERE name = $1', [name]);
        await enqueueEvent(tx, name, deps.events.deleted(name));
      });
      deps.onCommit();
    },
  };
}

/** What this service's own tables still hold in a namespace, worded as containerd's listNs does. */
async function ownResources(tx: Queryable, name: string): Promise<string[]> {
  const [row] = await tx.query<{ images: boolean; containers: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM metadata.images WHERE namespace = $1) AS images,
            EXISTS (SELECT 1 FROM metadata.containers WHERE namespace = $1) AS containers`,
    [name],
  );
  return [...(row?.images ? ['images'] : []), ...(row?.containers ? ['containers'] : [])];
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

/**
 * Prefix for the statement that creates a resource in namespace `$1`: brings the namespace into being in the
 * same statement (one round trip fewer; the foreign key sees the row at the end of the statement).
 */
export const ensuringNamespace =
  'WITH ensured_namespace AS (INSERT INTO metadata.namespaces (name) VALUES ($1) ON CONFLICT (name) DO NOTHING)';
