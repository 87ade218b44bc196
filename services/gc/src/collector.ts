import type { Logger } from '@berth/common/log';
import type { ContentSweep, Owners, SnapshotSweep } from './owners.js';
import { buildGraphPaced } from './rules/graph.js';
import { planSize, planSweep, RemovalQueue, type SweepPlan, snapshotId } from './rules/plan.js';
import type { Resources } from './rules/resources.js';

const countRecords = (r: Resources): number =>
  r.leases.length + r.images.length + r.containers.length + r.blobs.length + r.ingests.length + r.snapshots.length;

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
  /** Taking the change point: the collection lock, for as long as the writers in flight took to finish. */
  readonly changePointMs: number;
  /**
   * The longest time writers were held out after the mark, in one hold of the lock: from asking for it (the
   * writers in flight finish first), through reading what changed since the last change point, continuing
   * the mark and removing a batch of records, to the commit.
   */
  readonly pauseMs: number;
  readonly phases: {
    /** The full read and mark, while writers go on. */
    readonly markMs: number;
    /** Under the lock: reading the records changed during the mark and marking from them. */
    readonly remarkMs: number;
    readonly sweepMs: number;
    readonly contentMs: number;
    readonly snapshotsMs: number;
  };
  readonly marked: number;
  /** Records written during the mark, read again under the lock. */
  readonly changed: number;
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
  /** The most records one hold of the lock removes (default 250: 5–15 ms of deletes on Postgres). */
  readonly removalsPerPause?: number;
}): Collector {
  const now = deps.now ?? (() => new Date());
  const removalsPerPause = deps.removalsPerPause ?? 250;
  let running: Promise<unknown> = Promise.resolve();

  const once = async (onlyIfExpired: boolean): Promise<CollectionStats> => {
    const startedAt = now();
    const at = now();
    const t0 = performance.now();
    // Mark while writers go on, from a point after every writer in flight: whatever is written later is read
    // again under the lock, and its edges continue the mark (a snapshot-at-the-beginning mark, as concurrent
    // collectors of languages do with a write barrier; here the database's row versions are the barrier).
    const since = await deps.owners.changePoint();
    const tRead = performance.now();
    const base = await deps.owners.readAll();
    const graph = await buildGraphPaced(base, at);
    const firstMark = graph.mark();
    const found = planSweep(base, firstMark);
    const swept = !(onlyIfExpired && !expiryCollects(found, base, at));
    const queue = new RemovalQueue(swept ? found : noRemovals, base);
    const tLock = performance.now();
    const markMs = tLock - tRead;
    let remarkMs = 0;
    let sweepMs = 0;
    let pauseMs = 0;
    let point = since;
    const removed = { leases: 0, images: 0, blobs: 0, ingests: 0, snapshots: 0 };
    const nodes = new Set<string>();
    const parentsOfNew = new Set<string>();
    let marked = firstMark.size;
    let changed = 0;
    // Each hold of the lock removes at most `removalsPerPause` records; a large backlog (the first collection
    // after many removals) is swept in several short pauses, each continuing the mark from what changed since
    // the previous one, so nothing a writer referenced in between is removed.
    // With nothing to remove, writers are never held out.
    for (let more = queue.size > 0; more; ) {
      // Writers in this process get their turn between holds: an embedded database (PGlite) answers through
      // promises alone, so back-to-back holds would otherwise never let the event loop take I/O.
      await new Promise<void>((resolve) => setImmediate(resolve));
      const tAsk = performance.now();
      const round = await deps.owners.exclusive(async (s) => {
        const tRemark = performance.now();
        const fresh = await s.readChanged(point);
        graph.add(fresh);
        const m = graph.mark();
        for (const r of fresh.snapshots)
          if (r.parent !== '') parentsOfNew.add(snapshotId(r.namespace, r.snapshotter, r.parent));
        const batch = queue.next(removalsPerPause, m, parentsOfNew);
        const tSweep = performance.now();
        const md = planSize(batch) > 0 ? await s.removeMetadata(batch) : { leases: 0, images: 0 };
        const c = planSize(batch) > 0 ? await s.removeContent(batch) : { blobs: 0, ingests: 0 };
        const sn = planSize(batch) > 0 ? await s.removeSnapshots(batch) : { records: 0, nodes: [] };
        const next = queue.size > 0 ? await s.changePoint() : undefined;
        return { marked: m.size, fresh: countRecords(fresh), md, c, sn, tRemark, tSweep, next };
      });
      const tDone = performance.now();
      remarkMs += round.tSweep - round.tRemark;
      sweepMs += tDone - round.tSweep;
      pauseMs = Math.max(pauseMs, tDone - tAsk);
      marked = round.marked;
      changed += round.fresh;
      removed.leases += round.md.leases;
      removed.images += round.md.images;
      removed.blobs += round.c.blobs;
      removed.ingests += round.c.ingests;
      removed.snapshots += round.sn.records;
      for (const n of round.sn.nodes) nodes.add(n);
      more = round.next !== undefined;
      if (round.next !== undefined) point = round.next;
    }
    deps.hooks?.onPhase?.('mark', markMs + remarkMs);
    deps.hooks?.onPhase?.('sweep', sweepMs);

    // Backends after the records: containerd frees the bytes once the metadata transaction committed.
    const [content, snapshots] = await Promise.all([
      (async () => {
        const t = performance.now();
        const r = swept ? await deps.owners.sweepContent() : emptyContentSweep;
        return { r, ms: performance.now() - t };
      })(),
      (async () => {
        const t = performance.now();
        const r = await deps.owners.sweepSnapshots([...nodes]);
        return { r, ms: performance.now() - t };
      })(),
    ]);
    deps.hooks?.onPhase?.('content', content.ms);
    deps.hooks?.onPhase?.('snapshots', snapshots.ms);
    const stats: CollectionStats = {
      startedAt,
      elapsedMs: performance.now() - t0,
      changePointMs: tRead - t0,
      pauseMs,
      phases: { markMs, remarkMs, sweepMs, contentMs: content.ms, snapshotsMs: snapshots.ms },
      marked,
      changed,
      removed: { ...removed },
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
