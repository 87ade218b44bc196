import { createHash, type Hash, randomBytes, randomUUID } from 'node:crypto';
import { type RequestContext, requireNamespace } from '@berth/common/context';
import {
  alreadyExists,
  ErrorCode,
  failedPrecondition,
  invalidArgument,
  notFound,
  ServiceError,
} from '@berth/common/errors';
import { adaptorFromObject, alwaysPresent, parseFilters } from '@berth/common/filters';
import { holdCollectionLockShared, holdContentLockShared } from '@berth/common/gc-lock';
import { validateLabels } from '@berth/common/labels';
import type { Logger } from '@berth/common/log';
import { type RowCache, rowKey } from '@berth/common/row-cache';
import type { ContentRepo } from '../db/content-repo.js';
import type { BlobStore, Ingest } from '../store/blob-store.js';
import { BlobCache } from './blob-cache.js';
import { type Digest, sha256Digest } from './digest.js';
import { lockedError, RefLocks } from './locks.js';
import type { ContentStore, Info, IngestStatus, MetadataLink, Writer, WriterOptions } from './types.js';

export interface ContentStoreDeps {
  readonly repo: ContentRepo;
  readonly blobs: BlobStore;
  /**
   * Info rows of committed blobs. ctr asks Info and Read for every blob of every image it lists, and reads a
   * blob as one Read per MiB; asking the database each time would cost more than the answer. The caller keeps
   * it coherent with other writers (see listenRowCache); writes made here forget their rows themselves too.
   */
  readonly infos: RowCache<Info>;
  readonly metadata: MetadataLink;
  /** Encodes the /content/delete event written to the outbox. */
  readonly deleted: (digest: string) => { topic: string; typeUrl: string; payload: Uint8Array };
  /** Called after a commit that enqueued events. */
  readonly onCommit: () => void;
  readonly log: Logger;
  /** Writers this process keeps open at once (each holds a file or upload and a hash state); default 1024. */
  readonly maxOpenIngests?: number;
}

/** How long a writer's database lock lasts without renewal (a crashed replica's ingests free up after it). */
const lockMs = 30_000;
/** Unleased ingests become collectible after this, as in containerd. */
const ingestExpiryMs = 24 * 3600_000;
/** Blobs up to this size are kept in memory once read (indexes, manifests, configs); see BlobCache. */
const smallBlobBytes = 256 * 1024;
const smallBlobsBudget = 32 * 1024 * 1024;
/** Hash states kept for ingests interrupted in this process; beyond this the oldest are re-hashed on resume. */
const maxSuspended = 1024;

interface Suspended {
  readonly hash: Hash;
  readonly offset: number;
}

/** Builds containerd's namespaced content store over a blob backend and the `content` schema. */
export function createContentStore(deps: ContentStoreDeps): ContentStore {
  const { repo, blobs, infos } = deps;
  const small = new BlobCache(smallBlobBytes, smallBlobsBudget);
  const owner = randomUUID();
  const locks = new RefLocks();
  const maxOpenIngests = deps.maxOpenIngests ?? 1024;
  /** Writers open in this process, by backend key: Status answers from them without touching the disk. */
  const active = new Map<string, IngestWriter>();
  const suspended = new Map<string, Suspended>();
  const forget = (ns: string, digest: string): void => infos.forget(rowKey(ns, digest));

  const keep = (bref: string, s: Suspended): void => {
    suspended.delete(bref);
    suspended.set(bref, s);
    if (suspended.size > maxSuspended) {
      const oldest = suspended.keys().next().value;
      if (oldest !== undefined) suspended.delete(oldest);
    }
  };

  const statusOf = async (row: {
    bref: string;
    ref: string;
    total: number;
    expected: string;
    startedAt: Date;
    updatedAt: Date;
  }): Promise<IngestStatus> => {
    const w = active.get(row.bref);
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
    const cached = infos.get(key);
    if (cached) return cached;
    const epoch = infos.epoch();
    const info = await repo.blob(repo.db, ns, digest);
    if (!info) throw notFound(`content digest ${digest}`);
    infos.set(key, info, epoch);
    return info;
  };

  class IngestWriter implements Writer {
    private hash: Hash;
    private offset: number;
    private updatedAt: Date;
    private done = false;
    private broken = false;
    private readonly renew: NodeJS.Timeout;

    constructor(
      private readonly ctx: RequestContext,
      private readonly ns: string,
      private readonly ref: string,
      private readonly bref: string,
      private total: number,
      private readonly expected: string,
      private readonly startedAt: Date,
      /** The backend ingest; undefined while the writer stands for an already stored blob (`shared`). */
      private ingest: Ingest | undefined,
      resumed: Suspended | undefined,
      /** A blob of another namespace with the expected digest: committing needs no bytes. */
      private readonly shared: { digest: Digest; size: number } | undefined,
    ) {
      this.hash = resumed?.hash ?? createHash('sha256');
      this.offset = shared ? shared.size : (resumed?.offset ?? 0);
      this.updatedAt = startedAt;
      this.renew = setInterval(() => {
        repo
          .renewLock(bref, owner, lockMs)
          .catch((e: unknown) => ctx.log.warn('renewing ingest lock failed', { ref, err: e }));
      }, lockMs / 3);
      this.renew.unref();
      active.set(bref, this);
    }

    status(): IngestStatus {
      return {
        ref: this.ref,
        offset: this.offset,
        total: this.total,
        expected: this.expected,
        startedAt: this.startedAt,
        updatedAt: this.updatedAt,
      };
    }

    digest(): string {
      if (this.ingest === undefined && this.shared) return this.shared.digest;
      return sha256Digest(this.hash.copy().digest('hex'));
    }

    /** Turns a shared writer into one with real bytes: the client chose to send data after all. */
    private async materialize(keepBytes: boolean): Promise<Ingest> {
      if (this.ingest) return this.ingest;
      const ingest = await blobs.openIngest(this.bref);
      await ingest.truncate();
      this.hash = createHash('sha256');
      this.offset = 0;
      if (keepBytes && this.shared) {
        for await (const chunk of blobs.read(this.shared.digest, 0, this.shared.size)) {
          this.hash.update(chunk);
          await ingest.write(chunk);
          this.offset += chunk.length;
        }
      }
      this.ingest = ingest;
      return ingest;
    }

    async write(data: Buffer): Promise<void> {
      this.assertOpen();
      const ingest = this.ingest ?? (await this.materialize(true));
      this.hash.update(data);
      try {
        await ingest.write(data);
      } catch (e) {
        // The hash has seen bytes the backend may not hold: never keep this state for a resume.
        this.broken = true;
        throw e;
      }
      this.offset += data.length;
      this.updatedAt = new Date();
    }

    async truncate(): Promise<void> {
      this.assertOpen();
      const ingest = this.ingest ?? (await this.materialize(false));
      await ingest.truncate();
      this.hash = createHash('sha256');
      this.offset = 0;
      this.broken = false;
      this.updatedAt = new Date();
    }

    async commit(size: number, expected: Digest | undefined, labels: Readonly<Record<string, string>>): Promise<void> {
      this.assertOpen();
      try {
        validateInfoLabels(labels);
        let actual: Digest;
        if (this.ingest === undefined && this.shared) {
          if (size !== 0 && size !== this.shared.size) {
            throw failedPrecondition(
              `${JSON.stringify(this.ref)} failed size validation: ${this.shared.size} != ${size}`,
            );
          }
          if (expected !== undefined && expected !== this.shared.digest) {
            throw failedPrecondition(`${JSON.stringify(this.ref)} unexpected digest`);
          }
          actual = this.shared.digest;
          size = this.shared.size;
          // The bytes must still be there: they are not ours, so check rather than trust the index.
          if ((await blobs.stat(actual)) !== size)
            throw failedPrecondition(`content ${actual} is no longer stored, write it again`);
        } else {
          if (!this.ingest) await this.materialize(false);
          if (this.broken)
            throw new ServiceError(ErrorCode.DataLoss, `ingest ${this.ref} lost bytes after a failed write`);
          if (size !== 0 && size !== this.offset) {
            throw failedPrecondition(`${JSON.stringify(this.ref)} failed size validation: ${this.offset} != ${size}`);
          }
          actual = sha256Digest(this.hash.copy().digest('hex'));
          if (expected !== undefined && expected !== actual) {
            throw failedPrecondition(`unexpected commit digest ${actual}, expected ${expected}`);
          }
          size = this.offset;
        }
        // The lease holds the blob before its record exists: a collection between the two would see it unheld.
        await deps.metadata.addLeaseResource(this.ctx, 'content', actual);
        const at = new Date();
        const ingest = this.ingest;
        const created = await repo.db.transaction(async (tx) => {
          // containerd holds the content lock across backend commit and record, so the backend sweep never
          // sees committed bytes without their record; the collection lock keeps the new record's labels out
          // of a running mark-and-sweep.
          await holdCollectionLockShared(tx);
          await holdContentLockShared(tx);
          if (ingest) await ingest.commit(actual, size);
          else if ((await blobs.stat(actual)) !== size)
            throw failedPrecondition(`content ${actual} is no longer stored, write it again`);
          const inserted = await repo.insertBlob(tx, this.ns, actual, size, withoutEmpty(labels), at);
          await repo.deleteIngestByBref(tx, this.bref);
          return inserted;
        });
        this.ingest = undefined;
        // A row another replica deleted may still be cached here until its notification arrives.
        forget(this.ns, actual);
        this.finish();
        suspended.delete(this.bref);
        await deps.metadata.removeLeaseResource(this.ctx, 'ingests', this.ref);
        if (!created) throw alreadyExists(`content ${actual}`);
      } finally {
        if (!this.done) await this.close();
      }
    }

    async close(): Promise<void> {
      if (this.done) return;
      this.finish();
      try {
        if (this.ingest) {
          await this.ingest.suspend();
          if (!this.broken) keep(this.bref, { hash: this.hash, offset: this.offset });
        }
        await repo.unlockIngest(this.bref, owner, this.updatedAt);
      } catch (e) {
        this.ctx.log.warn('closing ingest failed; it resumes from what the backend holds', { ref: this.ref, err: e });
        suspended.delete(this.bref);
      }
    }

    private finish(): void {
      this.done = true;
      clearInterval(this.renew);
      active.delete(this.bref);
      locks.release(`${this.ns}/${this.ref}`);
    }

    private assertOpen(): void {
      if (this.done) throw failedPrecondition(`writer for ${this.ref} is closed`);
    }
  }

  return {
    async info(ctx, digest) {
      return requireInfo(requireNamespace(ctx), digest);
    },

    async update(ctx, info, paths) {
      const ns = requireNamespace(ctx);
      forget(ns, info.digest);
      const updated = await repo.db.transaction(async (tx) => {
        // New gc.ref labels must not appear between a collection's mark and its sweep.
        await holdCollectionLockShared(tx);
        const current = await repo.blob(tx, ns, info.digest, true);
        if (!current) throw notFound(`content digest ${info.digest}`);
        let labels: Record<string, string>;
        if (paths.length > 0) {
          labels = { ...current.labels };
          for (const path of paths) {
            if (path.startsWith('labels.')) {
              const key = path.slice('labels.'.length);
              const value = info.labels[key];
              if (value === undefined || value === '') delete labels[key];
              else labels[key] = value;
            } else if (path === 'labels') {
              labels = withoutEmpty(info.labels);
            } else {
              throw invalidArgument(
                `cannot update ${JSON.stringify(path)} field on content info ${JSON.stringify(info.digest)}`,
              );
            }
          }
        } else {
          labels = withoutEmpty(info.labels);
        }
        validateInfoLabels(labels);
        const at = new Date();
        await repo.setLabels(tx, ns, info.digest, labels, at);
        return { ...current, labels, updatedAt: at };
      });
      // Read-your-writes without waiting for the notification: a lookup racing the transaction saw the old row.
      forget(ns, info.digest);
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
      suspended.delete(bref);
      await blobs.removeIngest(bref);
      await deps.metadata.removeLeaseResource(ctx, 'ingests', ref);
    },

    async writer(ctx, opts: WriterOptions) {
      const ns = requireNamespace(ctx);
      if (opts.ref === '') throw invalidArgument('ref must not be empty');
      await deps.metadata.ensureNamespace(ctx, ns);
      let shared: { digest: Digest; size: number } | undefined;
      if (opts.expected !== undefined) {
        // Held by the lease first, then looked up: a blob found is then one a collection keeps.
        if (ctx.lease && (await repo.blob(repo.db, ns, opts.expected)))
          await deps.metadata.addLeaseResource(ctx, 'content', opts.expected);
        if (await repo.blob(repo.db, ns, opts.expected)) throw alreadyExists(`content ${opts.expected}`);
        // Bytes are shared by namespaces: a blob another namespace committed needs no upload here.
        const size = await repo.sizeAnywhere(opts.expected);
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
      if (locks.size >= maxOpenIngests) {
        throw new ServiceError(
          ErrorCode.ResourceExhausted,
          `too many open ingests (${maxOpenIngests}): commit or abort some, or retry later`,
        );
      }
      await locks.acquire(lockKey, opts.ref);
      try {
        const row = await repo.lockIngest({
          ns,
          ref: opts.ref,
          bref: randomBytes(16).toString('hex'),
          total: opts.total,
          expected: opts.expected ?? '',
          expiresAt: ctx.lease ? null : new Date(Date.now() + ingestExpiryMs),
          owner,
          lockMs,
        });
        if (!row) throw lockedError(opts.ref, new Date());
        let ingest: Ingest | undefined;
        let resumed: Suspended | undefined;
        if (!shared) {
          ingest = await blobs.openIngest(row.bref);
          const kept = suspended.get(row.bref);
          suspended.delete(row.bref);
          if (kept && kept.offset === ingest.size) resumed = kept;
          else resumed = await rehash(ingest);
        }
        return new IngestWriter(
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
        locks.release(lockKey);
        throw e;
      }
    },
  };
}

/** Recomputes the hash state of what an ingest already holds (resume after a restart or on another replica). */
async function rehash(ingest: Ingest): Promise<Suspended> {
  const hash = createHash('sha256');
  let offset = 0;
  for await (const chunk of ingest.readPrefix()) {
    hash.update(chunk);
    offset += chunk.length;
  }
  return { hash, offset };
}

function validateInfoLabels(labels: Readonly<Record<string, string>>): void {
  try {
    validateLabels(labels);
  } catch (e) {
    throw invalidArgument(`info.Labels: ${(e as Error).message.replace(/: invalid argument$/, '')}`, e);
  }
}

function withoutEmpty(labels: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== ''));
}
