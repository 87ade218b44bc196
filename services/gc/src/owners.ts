import type { SweepPlan } from './rules/plan.js';
import type { Resources } from './rules/resources.js';

/**
 * The collector's view of the resource owners (metadata, content, snapshots). It reads references and drives
 * deletes through them; it holds no data. In process (all-in-one) they are called directly; a collector in
 * its own process reaches them over berth.internal.v1.
 */
export interface CollectionSession {
  /** The records written since `since` (a change point from `Owners.changePoint` or this method). */
  readChanged(since: string): Promise<Resources>;
  /** The point after this session's writes: no writer is in flight while the session holds the lock. */
  changePoint(): Promise<string>;
  removeMetadata(plan: Pick<SweepPlan, 'leases' | 'images'>): Promise<{ leases: number; images: number }>;
  removeContent(plan: Pick<SweepPlan, 'blobs' | 'ingests'>): Promise<{ blobs: number; ingests: number }>;
  removeSnapshots(plan: Pick<SweepPlan, 'snapshots'>): Promise<{ records: number; nodes: string[] }>;
}

export interface ContentSweep {
  readonly blobsDeleted: number;
  readonly bytesFreed: number;
  readonly ingestsDeleted: number;
  readonly uploadsAborted: number;
  readonly failures: number;
}

export interface SnapshotSweep {
  /** Nodes that freed the directories of their removed records. */
  readonly nodes: readonly string[];
  /** Nodes that did not answer in time (they converge on their own when their notification or restart comes). */
  readonly skipped: readonly string[];
}

export interface Owners {
  /**
   * Waits for the writers in flight (holding the collection lock exclusively for that instant only) and
   * names the point after them: a record written by any later transaction is "changed since" it.
   */
  changePoint(): Promise<string>;
  /** Every owner's records, read while writers go on (after a change point: what changes is read again). */
  readAll(): Promise<Resources>;
  /**
   * Runs `fn` while every writer is held out (containerd's exclusive wlock) and only while this process may
   * collect (fenced: a deposed leader's sweep cannot commit). The record removals commit when `fn` resolves.
   */
  exclusive<T>(fn: (session: CollectionSession) => Promise<T>): Promise<T>;
  /** After the record sweep: frees the bytes no content record or ingest names any more. */
  sweepContent(): Promise<ContentSweep>;
  /** After the record sweep: the nodes whose records went free their directories. */
  sweepSnapshots(nodes: readonly string[]): Promise<SnapshotSweep>;
}
