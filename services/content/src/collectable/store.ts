import type { Db, Queryable } from '@berth/common/db';
import { holdContentLockExclusive } from '@berth/common/gc-lock';
import type { Logger } from '@berth/common/log';
import {
  allBlobReferences,
  allIngestReferences,
  deleteBlobRecords,
  deleteIngestRecords,
  ingestBackendKeys,
  namedDigests,
} from '../db/collectable-repo.js';
import type { BlobStore } from '../store/blob-store.js';

/**
 * What the garbage collector needs from content: every namespace's blob records and ingests, the removal of
 * those a collection left unmarked (inside the collector's transaction), and then the backend sweep, which
 * deletes the bytes no record and no ingest names any more (containerd's `cleanupContent`).
 */
export interface CollectableContent {
  /** Every record, or with `since` (a change point, libs/common gc-lock) only those written since. */
  read(q: Queryable, since?: string): Promise<ContentReferences>;
  /** Deletes the records and ingest rows; the ingests' backend keys are returned for `cleanupBackend`. */
  remove(q: Queryable, plan: ContentRemoval): Promise<{ blobs: number; ingests: number }>;
  /** After the removal committed: deletes unnamed blobs and ingest bytes. Never throws for one object. */
  cleanupBackend(opts: BackendSweepOptions): Promise<BackendSweepResult>;
  /** cleanupBackend, as a collector in another process asks for it. */
  sweepBackend(opts: { graceMs: number; deleteTimeoutMs: number }): Promise<BackendSweepResult>;
}

export interface ContentReferences {
  readonly blobs: Array<{ namespace: string; digest: string; labels: Record<string, string> }>;
  readonly ingests: Array<{ namespace: string; ref: string; expected: string; expiresAt: Date | null }>;
}

export interface ContentRemoval {
  readonly blobs: ReadonlyArray<{ readonly namespace: string; readonly digest: string }>;
  readonly ingests: ReadonlyArray<{ readonly namespace: string; readonly ref: string }>;
}

export interface BackendSweepOptions {
  /**
   * Objects younger than this are kept even with no record (another replica's upload may be between placing
   * its bytes and committing its record). 0 on a filesystem, where the content lock covers that window.
   */
  readonly graceMs: number;
  /** Each backend delete gives up after this; the object is counted as failed and the sweep goes on. */
  readonly deleteTimeoutMs: number;
  readonly now?: Date;
}

export interface BackendSweepResult {
  readonly blobsDeleted: number;
  readonly bytesFreed: number;
  readonly ingestsDeleted: number;
  readonly uploadsAborted: number;
  readonly failures: number;
}

export function createCollectableContent(deps: {
  readonly db: Db;
  readonly blobs: BlobStore;
  readonly log: Logger;
  /** Forgets cached Info rows of a removed record. */
  readonly forget: (namespace: string, digest: string) => void;
}): CollectableContent {
  const { db, blobs, log } = deps;

  const withTimeout = async (what: string, ms: number, fn: () => Promise<void>): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
        }),
      ]);
      return true;
    } catch (e) {
      log.warn('gc: backend delete failed; skipped', { what, err: e });
      return false;
    } finally {
      clearTimeout(timer);
    }
  };

  const collectable: CollectableContent = {
    sweepBackend: (opts) => collectable.cleanupBackend(opts),
    async read(q, since) {
      return { blobs: await allBlobReferences(q, since), ingests: await allIngestReferences(q, since) };
    },

    async remove(q, plan) {
      let removedBlobs = 0;
      if (plan.blobs.length > 0) {
        const gone = await deleteBlobRecords(q, plan.blobs);
        for (const g of gone) deps.forget(g.namespace, g.digest);
        removedBlobs = gone.length;
      }
      const removedIngests = plan.ingests.length > 0 ? await deleteIngestRecords(q, plan.ingests) : 0;
      return { blobs: removedBlobs, ingests: removedIngests };
    },

    async cleanupBackend(opts) {
      const now = (opts.now ?? new Date()).getTime();
      const old = (at: Date): boolean => now - at.getTime() >= opts.graceMs;
      let blobsDeleted = 0;
      let bytesFreed = 0;
      let ingestsDeleted = 0;
      let failures = 0;
      // Exclusive content lock: no commit places bytes and records them while we decide what is unnamed.
      await db.transaction(async (tx) => {
        await holdContentLockExclusive(tx);
        const named = await namedDigests(tx);
        const brefs = await ingestBackendKeys(tx);
        for await (const b of blobs.listBlobs((key) => named.has(key))) {
          if (!old(b.modifiedAt)) continue;
          const size = (await blobs.stat(b.key).catch(() => undefined)) ?? 0;
          if (await withTimeout(`blob ${b.key}`, opts.deleteTimeoutMs, () => blobs.delete(b.key))) {
            blobsDeleted++;
            bytesFreed += size;
          } else failures++;
        }
        for await (const i of blobs.listIngests((key) => brefs.has(key))) {
          if (!old(i.modifiedAt)) continue;
          if (await withTimeout(`ingest ${i.key}`, opts.deleteTimeoutMs, () => blobs.removeIngest(i.key)))
            ingestsDeleted++;
          else failures++;
        }
      });
      let uploadsAborted = 0;
      if (blobs.abortStaleUploads) {
        try {
          uploadsAborted = await blobs.abortStaleUploads(new Date(now - opts.graceMs));
        } catch (e) {
          failures++;
          log.warn('gc: aborting stale multipart uploads failed', { err: e });
        }
      }
      return { blobsDeleted, bytesFreed, ingestsDeleted, uploadsAborted, failures };
    },
  };
  return collectable;
}
