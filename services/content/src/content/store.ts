import { randomBytes } from 'node:crypto';
import { requireNamespace } from '@berth/common/context';
import { alreadyExists, ErrorCode, invalidArgument, notFound, ServiceError } from '@berth/common/errors';
import { adaptorFromObject, alwaysPresent, parseFilters } from '@berth/common/filters';
import { holdCollectionLockShared } from '@berth/common/gc-lock';
import type { Logger } from '@berth/common/log';
import { type RowCache, rowKey } from '@berth/common/row-cache';
import type { MetadataClient } from '@berth/metadata/client';
import type { ContentRepo } from '../db/content-repo.js';
import type { BlobStore, Ingest } from '../store/blob-store.js';
import { BlobCache } from './blob-cache.js';
import type { Digest } from './digest.js';
import { type LabelChange, labelChange, validateInfoLabels } from './info-labels.js';
import { IngestState, ingestExpiryMs, lockMs, rehash, type Suspended } from './ingest-state.js';
import { type IngestEnv, IngestWriter } from './ingest-writer.js';
import { lockedError } from './locks.js';
import type { IngestObserver } from './observer.js';
import type { ContentStore, Info, IngestStatus, WriterOptions } from './types.js';

export interface ContentStoreDeps {
  readonly repo: ContentRepo;
  readonly blobs: BlobStore;
  /**
   * Info rows of committed blobs, and null for a blob known to be missing. ctr asks Info and Read for every
   * blob of every image it lists, and reads a blob as one Read per MiB; asking the database each time would
   * cost more than the answer. A Write asks whether its blob exists when it opens and again when it commits
   * (containerd's contentserver does), and nearly always it does not. The caller keeps the cache coherent
   * with other writers (see listenRowCache: an insert notifies like an update or a delete); writes made here
   * forget their rows themselves too.
   */
  readonly infos: RowCache<Info | null>;
  readonly metadata: MetadataClient;
  /** Encodes the /content/delete event written to the outbox. */
  readonly deleted: (digest: string) => { topic: string; typeUrl: string; payload: Uint8Array };
  /** Called after a commit that enqueued events. */
  readonly onCommit: () => void;
  /** Told of Writes as they open and commit (a differ in the same process starts unpacking on them). */
  readonly observer?: IngestObserver;
  readonly log: Logger;
  /** Writers this process keeps open at once (each holds a file or upload and a hash state); default 1024. */
  readonly maxOpenIngests?: number;
}

/** Blobs up to this size are kept in memory once read (indexes, manifests, configs); see BlobCache. */
const smallBlobBytes = 256 * 1024;
const smallBlobsBudget = 32 * 1024 * 1024;

/** Builds containerd's namespaced content store over a blob backend and the `content` schema. */
export function createContentStore(deps: ContentStoreDeps): ContentStore {
  const { repo, blobs, infos } = deps;
  const small = new BlobCache(smallBlobBytes, smallBlobsBudget);
  const state = new IngestState();
  const maxOpenIngests = deps.maxOpenIngests ?? 1024;
  const forget = (ns: string, digest: string): void => infos.forget(rowKey(ns, digest));
  const env: IngestEnv = {
    repo,
    blobs,
    metadata: deps.metadata,
    state,
    forget,
    ...(deps.observer ? { observer: deps.observer } : {}),
  };

  const statusOf = async (row: {
    bref: string;
    ref: string;
    total: number;
    expected: string;
    startedAt: Date;
    updatedAt: Date;
  }): Promise<IngestStatus> => {
    const w = state.active.get(row.bref);
    if (w) return { ...w.status(), ref: row.ref };
    return {
      ref: row.ref,
      offset: (await blobs.ingestSize(row.bref)) ?? 0,
      total: row.total,
      expected: row.expected,
      startedAt: row.startedAt,
      updatedAt: row.updatedAt,
    };
  };

  const requireInfo = async (ns: string, digest: Digest): Promise<Info> => {
    const key = rowKey(ns, digest);
    let info = infos.get(key);
    if (info === undefined) {
      const epoch = infos.epoch();
      info = (await repo.blob(repo.db, ns, digest)) ?? null;
      infos.set(key, info, epoch);
    }
    if (!info) throw notFound(`content digest ${digest}`);
    return info;
  };

  return {
    async info(ctx, digest) {
      return requireInfo(requireNamespace(ctx), digest);
    },

    async update(ctx, info, paths) {
      const ns = requireNamespace(ctx);
      let change: LabelChange;
      try {
        change = labelChange(info.digest, info.labels, paths);
        // The labels kept were valid already: only those the Update brings need checking.
        validateInfoLabels({ ...change.replace, ...change.set });
      } catch (e) {
        // containerd finds the blob first: a missing one is not_found, whatever else is wrong.
        if (!(await repo.blob(repo.db, ns, info.digest))) throw notFound(`content digest ${info.digest}`);
        throw e;
      }
      forget(ns, info.digest);
      const updated = await repo.db.transaction(async (tx) => {
        // New gc.ref labels must not appear between a collection's mark and its sweep.
        await holdCollectionLockShared(tx);
        return repo.updateLabels(tx, ns, info.digest, change, new Date());
      });
      // Read-your-writes without waiting for the notification: a lookup racing the transaction saw the old row.
      forget(ns, info.digest);
      if (!updated) throw notFound(`content digest ${info.digest}`);
      return updated;
    },

    async list(ctx, filters) {
      const ns = requireNamespace(ctx);
      const filter = parseFilters([...filters]);
      const all = await repo.blobs(ns);
      return all.filter((i) => filter.match(adaptorFromObject({ digest: alwaysPresent(i.digest), labels: i.labels })));
    },

    async delete(ctx, digest) {
      const ns = requireNamespace(ctx);
      forget(ns, digest);
      await repo.db.transaction(async (tx) => {
        if (!(await repo.deleteBlob(tx, ns, digest))) throw notFound(`content digest ${digest}`);
        const e = deps.deleted(digest);
        await repo.enqueue(tx, { namespace: ns, topic: e.topic, typeUrl: e.typeUrl, payload: e.payload });
      });
      // Again after commit: a lookup racing the transaction may have cached the row it still saw.
      forget(ns, digest);
      deps.onCommit();
      await deps.metadata.removeLeaseResource(ctx, 'content', digest);
    },

    async read(ctx, digest, offset, size) {
      const ns = requireNamespace(ctx);
      const info = await requireInfo(ns, digest);
      const start = Math.max(0, offset);
      if (start > info.size) throw new ServiceError(ErrorCode.OutOfRange, `read past object length ${info.size} bytes`);
      const length = size <= 0 || start + size > info.size ? info.size - start : size;
      if (info.size > small.maxBlob || length === 0) return blobs.read(digest, start, length, ctx.signal);
      let bytes = small.get(digest);
      if (!bytes) {
        const chunks: Buffer[] = [];
        for await (const c of blobs.read(digest, 0, info.size, ctx.signal)) chunks.push(c);
        bytes = Buffer.concat(chunks);
        if (bytes.length !== info.size)
          throw new ServiceError(ErrorCode.DataLoss, `content digest ${digest}: short blob`);
        small.set(digest, bytes);
      }
      return [bytes.subarray(start, start + length)];
    },

    async status(ctx, ref) {
      const ns = requireNamespace(ctx);
      const row = await repo.ingest(ns, ref);
      if (!row) throw notFound(`reference ${ref}`);
      return statusOf(row);
    },

    async listStatuses(ctx, filters) {
      const ns = requireNamespace(ctx);
      const filter = parseFilters([...filters]);
      const statuses = await Promise.all((await repo.ingests(ns)).map(statusOf));
      return statuses.filter((s) => filter.match(adaptorFromObject({ ref: alwaysPresent(s.ref) })));
    },

    async abort(ctx, ref) {
      const ns = requireNamespace(ctx);
      const bref = await repo.deleteIngest(repo.db, ns, ref);
      if (bref === undefined) throw notFound(`reference ${ref}`);
      state.suspended.delete(bref);
      await blobs.removeIngest(bref);
      await deps.metadata.removeLeaseResource(ctx, 'ingests', ref);
    },

    async writer(ctx, opts: WriterOptions) {
      const ns = requireNamespace(ctx);
      if (opts.ref === '') throw invalidArgument('ref must not be empty');
      await deps.metadata.ensureNamespace(ctx, ns);
      let shared: { digest: Digest; size: number } | undefined;
      if (opts.expected !== undefined) {
        const key = rowKey(ns, opts.expected);
        const epoch = infos.epoch();
        const found = await repo.presence(ns, opts.expected);
        if (found.here) {
          // Held by the lease first, then looked up again: a blob found is then one a collection keeps.
          if (!ctx.lease) throw alreadyExists(`content ${opts.expected}`);
          await deps.metadata.addLeaseResource(ctx, 'content', opts.expected);
          if (await repo.blob(repo.db, ns, opts.expected)) throw alreadyExists(`content ${opts.expected}`);
        } else {
          // Most writes are of blobs not stored yet; the Write asks again when it commits.
          infos.set(key, null, epoch);
        }
        // Bytes are shared by namespaces: a blob another namespace committed needs no upload here.
        const size = found.size;
        if (
          size !== undefined &&
          (opts.total === 0 || opts.total === size) &&
          (await blobs.stat(opts.expected)) === size
        ) {
          shared = { digest: opts.expected, size };
        }
      }

      // Before the ingest row exists: an unknown lease then refuses the write without leaving anything behind.
      await deps.metadata.addLeaseResource(ctx, 'ingests', opts.ref);
      const lockKey = `${ns}/${opts.ref}`;
      if (state.locks.size >= maxOpenIngests) {
        throw new ServiceError(
          ErrorCode.ResourceExhausted,
          `too many open ingests (${maxOpenIngests}): commit or abort some, or retry later`,
        );
      }
      await state.locks.acquire(lockKey, opts.ref);
      try {
        const row = await repo.lockIngest({
          ns,
          ref: opts.ref,
          bref: randomBytes(16).toString('hex'),
          total: opts.total,
          expected: opts.expected ?? '',
          expiresAt: ctx.lease ? null : new Date(Date.now() + ingestExpiryMs),
          owner: state.owner,
          lockMs,
        });
        if (!row) throw lockedError(opts.ref, new Date());
        let ingest: Ingest | undefined;
        let resumed: Suspended | undefined;
        if (!shared) {
          ingest = await blobs.openIngest(row.bref);
          const kept = state.suspended.get(row.bref);
          state.suspended.delete(row.bref);
          if (kept && kept.offset === ingest.size) resumed = kept;
          else resumed = await rehash(ingest);
        }
        return new IngestWriter(
          env,
          ctx,
          ns,
          opts.ref,
          row.bref,
          row.total,
          row.expected,
          row.startedAt,
          ingest,
          resumed,
          shared,
        );
      } catch (e) {
        state.locks.release(lockKey);
        throw e;
      }
    },
  };
}
