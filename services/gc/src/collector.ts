import type { Logger } from '@berth/common/log';
import type { ContentSweep, Owners, SnapshotSweep } from './owners.js';
import { buildGraph } from './rules/graph.js';
import { planSweep, type SweepPlan } from './rules/plan.js';
import type { Resources } from './rules/resources.js';

const emptyContentSweep: ContentSweep = {
  blobsDeleted: 0,
  bytesFreed: 0,
  ingestsDeleted: 0,
  uploadsAborted: 0,
  failures: 0,
};
const noRemovals: SweepPlan = { leases: [], images: [], blobs: [], ingests: [], snapshots: [] };

/** Whether an expiry is what leaves something collectable: only expired leases and images can be unmarked. */
function expiryCollects(plan: SweepPlan, r: Resources, now: Date): boolean {
  if (plan.leases.length > 0 || plan.images.length > 0) return true;
  const removed = new Set(plan.ingests.map((i) => `${i.namespace}/${i.ref}`));
  return r.ingests.some(
    (i) => i.expiresAt !== null && i.expiresAt.getTime() <= now.getTime() && removed.has(`${i.namespace}/${i.ref}`),
  );
}

/** What one collection did, as `berth gc` prints it and the metrics count it. */
export interface CollectionStats {
  readonly startedAt: Date;
  /** From taking the lock to the end of the backend sweeps. */
  readonly elapsedMs: number;
  /** How long writers were held out: lock, read, mark, record sweep, commit. */
  readonly pauseMs: number;
  readonly phases: {
    readonly markMs: number;
    readonly sweepMs: number;
    readonly contentMs: number;
    readonly snapshotsMs: number;
  };
  readonly marked: number;
  readonly removed: {
    readonly leases: number;
    readonly images: number;
    readonly blobs: number;
    readonly ingests: number;
    readonly snapshots: number;
  };
  readonly content: ContentSweep;
  readonly snapshots: SnapshotSweep;
}

export type Phase = 'mark' | 'sweep' | 'content' | 'snapshots';

export interface CollectorHooks {
  /** Each phase's duration, for the per-phase histograms. */
  onPhase?(phase: Phase, ms: number): void;
}

export interface Collector {
  /**
   * Runs one mark-and-sweep now (after any running one). Rejects when the collection failed. With
   * `onlyIfExpired` (the idle trigger) it removes nothing unless an expiry (a lease's or image's `gc.expire`, an
   * ingest's expiry) made something collectable: containerd collects only after a deletion or enough mutations,
   * and an expiry is the one deletion no call reports. Unreferenced content on an idle daemon stays, as there.
   */
  collect(opts?: { readonly onlyIfExpired?: boolean }): Promise<CollectionStats>;
  /** Resolves once no collection is running. */
  settled(): Promise<void>;
}

export function createCollector(deps: {
  readonly owners: Owners;
  readonly log: Logger;
  readonly hooks?: CollectorHooks;
  readonly now?: () => Date;
}): Collector {
  const now = deps.now ?? (() => new Date());
  let running: Promise<unknown> = Promise.resolve();

  const once = async (onlyIfExpired: boolean): Promise<CollectionStats> => {
    const startedAt = now();
    const t0 = performance.now();
    let markMs = 0;
    const locked = await deps.owners.exclusive(async (s) => {
      const tMark = performance.now();
      const [metadata, content, snapshots] = [await s.readMetadata(), await s.readContent(), await s.readSnapshots()];
      const resources = { ...metadata, ...content, ...snapshots };
      const graph = buildGraph(resources, now());
      const marked = graph.mark();
      const found = planSweep(resources, marked);
      const plan = onlyIfExpired && !expiryCollects(found, resources, now()) ? noRemovals : found;
      const tSweep = performance.now();
      markMs = tSweep - tMark;
      const m = await s.removeMetadata(plan);
      const c = await s.removeContent(plan);
      const sn = await s.removeSnapshots(plan);
      return { marked: marked.size, m, c, sn, tSweep, swept: plan !== noRemovals };
    });
    const tCommitted = performance.now();
    const sweepMs = tCommitted - locked.tSweep;
    deps.hooks?.onPhase?.('mark', markMs);
    deps.hooks?.onPhase?.('sweep', sweepMs);

    // Backends after the records: containerd frees the bytes once the metadata transaction committed.
    const [content, snapshots] = await Promise.all([
      (async () => {
        const t = performance.now();
        const r = locked.swept ? await deps.owners.sweepContent() : emptyContentSweep;
        return { r, ms: performance.now() - t };
      })(),
      (async () => {
        const t = performance.now();
        const r = await deps.owners.sweepSnapshots(locked.sn.nodes);
        return { r, ms: performance.now() - t };
      })(),
    ]);
    deps.hooks?.onPhase?.('content', content.ms);
    deps.hooks?.onPhase?.('snapshots', snapshots.ms);
    const stats: CollectionStats = {
      startedAt,
      elapsedMs: performance.now() - t0,
      pauseMs: tCommitted - t0,
      phases: { markMs, sweepMs, contentMs: content.ms, snapshotsMs: snapshots.ms },
      marked: locked.marked,
      removed: { ...locked.m, ...locked.c, snapshots: locked.sn.records },
      content: content.r,
      snapshots: snapshots.r,
    };
    deps.log.debug('garbage collected', { ...stats.removed, elapsedMs: Math.round(stats.elapsedMs) });
    return stats;
  };

  return {
    collect(opts) {
      const go = (): Promise<CollectionStats> => once(opts?.onlyIfExpired ?? false);
      const run = running.then(go, go);
      running = run.catch(() => undefined);
      return run;
    },
    settled: () => running.then(() => undefined),
  };
}
