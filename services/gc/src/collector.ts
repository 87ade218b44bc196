import type { Logger } from '@berth/common/log';
import { tricolor } from './mark/tricolor.js';
import type { ContentSweep, Owners, SnapshotSweep } from './owners.js';
import { buildGraph, normalizeNode } from './rules/graph.js';
import { planSweep } from './rules/plan.js';

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
  /** Runs one mark-and-sweep now (after any running one). Rejects when the collection failed. */
  collect(): Promise<CollectionStats>;
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

  const once = async (): Promise<CollectionStats> => {
    const startedAt = now();
    const t0 = performance.now();
    let markMs = 0;
    const locked = await deps.owners.exclusive(async (s) => {
      const tMark = performance.now();
      const [metadata, content, snapshots] = [await s.readMetadata(), await s.readContent(), await s.readSnapshots()];
      const resources = { ...metadata, ...content, ...snapshots };
      const graph = buildGraph(resources, now());
      const marked = tricolor(graph.roots, (n) => graph.refs(n), normalizeNode);
      const plan = planSweep(resources, marked);
      const tSweep = performance.now();
      markMs = tSweep - tMark;
      const m = await s.removeMetadata(plan);
      const c = await s.removeContent(plan);
      const sn = await s.removeSnapshots(plan);
      return { marked: marked.size, m, c, sn, tSweep };
    });
    const tCommitted = performance.now();
    const sweepMs = tCommitted - locked.tSweep;
    deps.hooks?.onPhase?.('mark', markMs);
    deps.hooks?.onPhase?.('sweep', sweepMs);

    // Backends after the records: containerd frees the bytes once the metadata transaction committed.
    const [content, snapshots] = await Promise.all([
      (async () => {
        const t = performance.now();
        const r = await deps.owners.sweepContent();
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
    collect() {
      const run = running.then(once, once);
      running = run.catch(() => undefined);
      return run;
    },
    settled: () => running.then(() => undefined),
  };
}
