import type { SweepPlan } from './rules/plan.js';
import type { ContentResources, MetadataResources, SnapshotResources } from './rules/resources.js';

/**
 * The collector's view of the resource owners (metadata, content, snapshots). It reads references and drives
 * deletes through them; it holds no data. In process (all-in-one) they are called directly; a collector in
 * its own process reaches them over berth.internal.v1.
 */
export interface CollectionSession {
  readMetadata(): Promise<MetadataResources>;
  readContent(): Promise<ContentResources>;
  readSnapshots(): Promise<SnapshotResources>;
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
   * Runs `fn` while every writer is held out (containerd's exclusive wlock) and only while this process may
   * collect (fenced: a deposed leader's sweep cannot commit). The record removals commit when `fn` resolves.
   */
  exclusive<T>(fn: (session: CollectionSession) => Promise<T>): Promise<T>;
  /** After the record sweep: frees the bytes no content record or ingest names any more. */
  sweepContent(): Promise<ContentSweep>;
  /** After the record sweep: the nodes whose records went free their directories. */
  sweepSnapshots(nodes: readonly string[]): Promise<SnapshotSweep>;
}
