import type { RequestContext } from '@berth/common/context';
import type { Digest } from './digest.js';

/** A committed blob as one namespace sees it. */
export interface Info {
  readonly digest: Digest;
  readonly size: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly labels: Readonly<Record<string, string>>;
}

/** Progress of an ingest. */
export interface IngestStatus {
  readonly ref: string;
  readonly offset: number;
  readonly total: number;
  readonly expected: string;
  readonly startedAt: Date;
  readonly updatedAt: Date;
}

export interface WriterOptions {
  readonly ref: string;
  /** Expected total size; 0 when unknown. */
  readonly total: number;
  readonly expected: Digest | undefined;
}

/**
 * The single writer of one ingest; holds the ref's lock until `commit` or `close`. Bytes written are not
 * visible through the store until `commit` succeeds.
 */
export interface Writer {
  status(): IngestStatus;
  /** Digest of the bytes written so far. */
  digest(): string;
  write(data: Buffer): Promise<void>;
  /** Drops everything written (a write at offset 0 restarts the ingest). */
  truncate(): Promise<void>;
  /**
   * Verifies `size` (when > 0) and `expected` (when given) against the bytes, places the blob and makes it
   * visible in the namespace with `labels`. failed_precondition on a mismatch (the ingest is kept);
   * already_exists when the namespace already had the blob (the ingest is removed). Always releases the lock.
   */
  commit(size: number, expected: Digest | undefined, labels: Readonly<Record<string, string>>): Promise<void>;
  /** Releases the lock and keeps the ingest for a later writer; a no-op after commit. Never rejects. */
  close(): Promise<void>;
  /**
   * Removes the ingest (its record, bytes and lease reference), then releases the lock: a writer waiting for
   * the ref starts a new ingest, never one being removed. A no-op after commit or close.
   */
  abort(): Promise<void>;
}

/** containerd's namespaced content store (`metadata/content.go` over `content/local`). */
export interface ContentStore {
  /** not_found when the digest is not visible in ctx's namespace. */
  info(ctx: RequestContext, digest: Digest): Promise<Info>;
  /** Updates labels: `labels.<key>` paths set or (empty value) remove one label, `labels` or no paths replace all. */
  update(ctx: RequestContext, info: Pick<Info, 'digest' | 'labels'>, paths: readonly string[]): Promise<Info>;
  /** Blobs of the namespace matching containerd filters (`digest`, `labels.<key>`); invalid_argument on bad syntax. */
  list(ctx: RequestContext, filters: readonly string[]): Promise<Info[]>;
  /** Hides the blob in this namespace and publishes /content/delete; not_found when not visible. */
  delete(ctx: RequestContext, digest: Digest): Promise<void>;
  /**
   * The bytes `[offset, offset+size)` of a visible blob, clipped to its end (`size <= 0` reads to the end);
   * out_of_range when `offset` is past the end. A small blob held in memory comes as a plain array.
   */
  read(
    ctx: RequestContext,
    digest: Digest,
    offset: number,
    size: number,
  ): Promise<AsyncIterable<Buffer> | readonly Buffer[]>;
  /** not_found when the namespace has no ingest `ref`. */
  status(ctx: RequestContext, ref: string): Promise<IngestStatus>;
  listStatuses(ctx: RequestContext, filters: readonly string[]): Promise<IngestStatus[]>;
  /** Removes the ingest and its bytes; not_found when absent. */
  abort(ctx: RequestContext, ref: string): Promise<void>;
  /**
   * Opens (or resumes) the ingest `ref`. already_exists when `expected` is already visible in the namespace;
   * unavailable while another writer holds the ref.
   */
  writer(ctx: RequestContext, opts: WriterOptions): Promise<Writer>;
}

/** What content asks of the metadata service: namespaces come into being, leases hold content. */
