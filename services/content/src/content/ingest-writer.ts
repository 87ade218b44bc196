import { createHash, type Hash } from 'node:crypto';
import type { RequestContext } from '@berth/common/context';
import { alreadyExists, ErrorCode, failedPrecondition, ServiceError } from '@berth/common/errors';
import { holdCollectionLockShared, holdContentLockShared } from '@berth/common/gc-lock';
import { withoutEmpty } from '@berth/common/labels';
import type { MetadataClient } from '@berth/metadata/client';
import type { ContentRepo } from '../db/content-repo.js';
import type { BlobStore, Ingest } from '../store/blob-store.js';
import { type Digest, sha256Digest } from './digest.js';
import { validateInfoLabels } from './info-labels.js';
import { type IngestState, lockMs, type Suspended } from './ingest-state.js';
import type { IngestObserver, WriteTap } from './observer.js';
import type { IngestStatus, Writer } from './types.js';

/** Bytes a writer may have accepted ahead of the backend (a few of ctr's chunks, at most 16 of 1 MiB). */
const maxPendingBytes = 16 * 1024 * 1024;

/** What a writer works with: the store's repository, blob backend, metadata link and ingest state. */
export interface IngestEnv {
  readonly repo: ContentRepo;
  readonly blobs: BlobStore;
  readonly metadata: MetadataClient;
  readonly state: IngestState;
  /** Drops a blob's cached info row. */
  forget(ns: string, digest: string): void;
  /** Told of Writes as they open and commit (a differ in the same process). */
  readonly observer?: IngestObserver;
}

/**
 * One open Write: hashes what it is sent into a backend ingest, holds the ingest's database lock while open,
 * and commits blob and record together. A writer for a blob another namespace already stored (`shared`)
 * commits without bytes unless the client sends some.
 */
export class IngestWriter implements Writer {
  private hash: Hash;
  private offset: number;
  private updatedAt: Date;
  private done = false;
  private broken = false;
  private readonly renew: NodeJS.Timeout;
  /** Backend writes still under way: a WRITE is answered once hashed, its bytes follow in order. */
  private pending: Promise<void> = Promise.resolve();
  private pendingBytes = 0;
  /** The first failed backend write, reported by the next call. */
  private failure: unknown;
  /** Gets the bytes as they come (a differ unpacking the layer meanwhile); only for a write from offset 0. */
  private tap: WriteTap | undefined;
  /** Ends this Write's part in its namespace's activity (the observer's `active`). */
  private readonly running: (() => void) | undefined;

  constructor(
    private readonly env: IngestEnv,
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
      env.repo
        .renewLock(bref, env.state.owner, lockMs)
        .catch((e: unknown) => ctx.log.warn('renewing ingest lock failed', { ref, err: e }));
    }, lockMs / 3);
    this.renew.unref();
    env.state.active.set(bref, this);
    this.running = env.observer?.active?.(ns);
    if (this.offset === 0 && !shared && expected !== '') this.tap = env.observer?.opened(ns, expected, total);
  }

  private endTap(committed: boolean): void {
    const tap = this.tap;
    this.tap = undefined;
    tap?.end(committed);
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
    const ingest = await this.env.blobs.openIngest(this.bref);
    await ingest.truncate();
    this.hash = createHash('sha256');
    this.offset = 0;
    if (keepBytes && this.shared) {
      for await (const chunk of this.env.blobs.read(this.shared.digest, 0, this.shared.size)) {
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
    if (this.failure !== undefined) throw this.failure;
    const ingest = this.ingest ?? (await this.materialize(true));
    this.hash.update(data);
    this.offset += data.length;
    const tapped = this.tap?.push(data);
    if (tapped) await tapped;
    this.updatedAt = new Date();
    // Each chunk's write goes through libuv's thread pool; awaiting it before answering would add that round
    // trip to every chunk of the client's lock-step stream. Up to maxPendingBytes run behind the answers.
    this.pendingBytes += data.length;
    this.pending = this.pending.then(
      () =>
        ingest.write(data).then(
          () => {
            this.pendingBytes -= data.length;
          },
          (e: unknown) => {
            // The hash has seen bytes the backend may not hold: never keep this state for a resume.
            this.broken = true;
            this.failure ??= e;
          },
        ),
      () => undefined,
    );
    if (this.pendingBytes > maxPendingBytes) await this.settle();
  }

  /** Waits for the backend writes under way; throws the first that failed. */
  private async settle(): Promise<void> {
    await this.pending;
    if (this.failure !== undefined) throw this.failure;
  }

  async truncate(): Promise<void> {
    this.assertOpen();
    this.endTap(false);
    await this.pending;
    this.failure = undefined;
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
        if ((await this.env.blobs.stat(actual)) !== size)
          throw failedPrecondition(`content ${actual} is no longer stored, write it again`);
      } else {
        if (!this.ingest) await this.materialize(false);
        await this.pending;
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
      const ingest = this.ingest;
      // Metadata in this process on this very database: the lease takes the blob and lets go of the ingest in
      // the commit's own transaction, as containerd's one bolt transaction does.
      const leases = this.env.metadata.leaseResourcesIn?.(this.env.repo.db);
      // Otherwise the lease holds the blob before its record exists (a collection between the two would see it
      // unheld), added while the data is fsynced. The fsync stays outside the transaction: held inside, it kept
      // the database (one connection when embedded) from every other call of the pull for as long as the disk
      // took.
      await Promise.all([
        leases ? undefined : this.env.metadata.addLeaseResource(this.ctx, 'content', actual),
        ingest?.flush?.(),
      ]);
      const at = new Date();
      const created = await this.env.repo.db.transaction(async (tx) => {
        // containerd holds the content lock across backend commit and record, so the backend sweep never
        // sees committed bytes without their record; the collection lock keeps the new record's labels out
        // of a running mark-and-sweep.
        await holdCollectionLockShared(tx);
        await holdContentLockShared(tx);
        await leases?.add(tx, this.ctx, 'content', actual);
        if (ingest) await ingest.commit(actual, size);
        else if ((await this.env.blobs.stat(actual)) !== size)
          throw failedPrecondition(`content ${actual} is no longer stored, write it again`);
        const inserted = await this.env.repo.commitBlob(tx, {
          ns: this.ns,
          digest: actual,
          size,
          labels: withoutEmpty(labels),
          at,
          bref: this.bref,
        });
        await leases?.remove(tx, this.ctx, 'ingests', this.ref);
        return inserted;
      });
      this.ingest = undefined;
      // A row another replica deleted may still be cached here until its notification arrives.
      this.env.forget(this.ns, actual);
      this.endTap(true);
      this.finish();
      this.env.state.suspended.delete(this.bref);
      if (!leases) await this.env.metadata.removeLeaseResource(this.ctx, 'ingests', this.ref);
      if (!created) throw alreadyExists(`content ${actual}`);
      this.env.observer?.committed(this.ns, actual, size);
    } finally {
      if (!this.done) await this.close();
    }
  }

  async close(): Promise<void> {
    if (this.done) return;
    this.finish();
    try {
      await this.pending;
      if (this.ingest) {
        await this.ingest.suspend();
        if (!this.broken) this.env.state.keep(this.bref, { hash: this.hash, offset: this.offset });
      }
      await this.env.repo.unlockIngest(this.bref, this.env.state.owner, this.updatedAt);
    } catch (e) {
      this.ctx.log.warn('closing ingest failed; it resumes from what the backend holds', { ref: this.ref, err: e });
      this.env.state.suspended.delete(this.bref);
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    try {
      await this.pending.catch(() => undefined);
      await this.env.repo.deleteIngestByBref(this.env.repo.db, this.bref);
      this.env.state.suspended.delete(this.bref);
      if (this.ingest) await this.ingest.suspend().catch(() => undefined);
      this.ingest = undefined;
      await this.env.blobs.removeIngest(this.bref);
      await this.env.metadata.removeLeaseResource(this.ctx, 'ingests', this.ref);
    } finally {
      this.finish();
    }
  }

  private finish(): void {
    this.endTap(false);
    this.running?.();
    this.done = true;
    clearInterval(this.renew);
    this.env.state.active.delete(this.bref);
    this.env.state.locks.release(`${this.ns}/${this.ref}`);
  }

  private assertOpen(): void {
    if (this.done) throw failedPrecondition(`writer for ${this.ref} is closed`);
  }
}
