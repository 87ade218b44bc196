import type { Db, Queryable } from '@berth/common/db';
import { changePoint, holdCollectionLockExclusive } from '@berth/common/gc-lock';
import type { Logger } from '@berth/common/log';
import type { ContentSweep, Owners, SnapshotSweep } from './owners.js';
import type { SweepPlan } from './rules/plan.js';
import type { ContentResources, MetadataResources, SnapshotResources } from './rules/resources.js';

/** The owners' collectable parts as they export them (structurally; the gc imports no service). */
export interface LocalOwnerParts {
  readonly metadata: {
    read(q: Queryable, since?: string): Promise<MetadataResources>;
    remove(q: Queryable, plan: Pick<SweepPlan, 'leases' | 'images'>): Promise<{ leases: number; images: number }>;
  };
  readonly content: {
    read(q: Queryable, since?: string): Promise<ContentResources>;
    remove(q: Queryable, plan: Pick<SweepPlan, 'blobs' | 'ingests'>): Promise<{ blobs: number; ingests: number }>;
    cleanupBackend(opts: { graceMs: number; deleteTimeoutMs: number }): Promise<ContentSweep>;
  };
  readonly snapshots: {
    read(q: Queryable, since?: string): Promise<SnapshotResources>;
    remove(q: Queryable, plan: Pick<SweepPlan, 'snapshots'>): Promise<{ records: number; nodes: string[] }>;
  };
  /** This process's node and how it frees its directories; other nodes reconcile on their notification. */
  readonly node: { readonly name: string; reconcile(): Promise<number> } | undefined;
}

export interface BackendOptions {
  /** Content objects younger than this are kept even without a record. Default 0 (fs), 2 h on S3. */
  readonly contentGraceMs: number;
  /** Each backend delete gives up after this and is counted as failed. Default 30 s. */
  readonly deleteTimeoutMs: number;
}

/**
 * All-in-one: the owners share this process and its database. The full read runs while writers go on; one
 * transaction then holds the collection lock exclusively, reads what changed since the change point and
 * removes the unmarked records, as containerd's single bolt transaction does.
 */
export function inProcessOwners(db: Db, parts: LocalOwnerParts, backend: BackendOptions, log: Logger): Owners {
  const read = async (q: Queryable, since?: string) => ({
    ...(await parts.metadata.read(q, since)),
    ...(await parts.content.read(q, since)),
    ...(await parts.snapshots.read(q, since)),
  });
  return {
    changePoint: () =>
      db.transaction(async (tx) => {
        await holdCollectionLockExclusive(tx);
        return changePoint(tx);
      }),
    readAll: () => read(db),
    exclusive: (fn) =>
      db.transaction(async (tx) => {
        await holdCollectionLockExclusive(tx);
        return fn({
          readChanged: (since) => read(tx, since),
          changePoint: () => changePoint(tx),
          removeMetadata: (plan) => parts.metadata.remove(tx, plan),
          removeContent: (plan) => parts.content.remove(tx, plan),
          removeSnapshots: (plan) => parts.snapshots.remove(tx, plan),
        });
      }),
    sweepContent: () =>
      parts.content.cleanupBackend({ graceMs: backend.contentGraceMs, deleteTimeoutMs: backend.deleteTimeoutMs }),
    async sweepSnapshots(nodes): Promise<SnapshotSweep> {
      const local = parts.node;
      if (!local || !nodes.includes(local.name)) return { nodes: [], skipped: nodes.filter((n) => n !== local?.name) };
      try {
        await withTimeout(local.reconcile(), backend.deleteTimeoutMs);
        return { nodes: [local.name], skipped: nodes.filter((n) => n !== local.name) };
      } catch (e) {
        log.warn('gc: node did not free its snapshot directories in time', { node: local.name, err: e });
        return { nodes: [], skipped: [...nodes] };
      }
    },
  };
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
