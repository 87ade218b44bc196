/**
 * The raw, namespace-less byte store under the content service (containerd's `content/local` role):
 * committed blobs addressed by digest, and ingests addressed by an opaque key. It knows nothing of
 * namespaces, labels, hashing or gRPC; the content store above it does.
 *
 * Contract shared by every backend (checked by the conformance suite):
 * - a blob becomes readable under its digest only once `commit` has fully placed it: a crash or a killed
 *   stream before that leaves nothing at the digest's address;
 * - every byte an ingest acknowledged through `write` and kept through `suspend` is readable again through
 *   `readPrefix` when the ingest is reopened (also by another process), so the writer can re-hash it.
 */
export interface BlobStore {
  readonly kind: 'fs' | 's3';
  /** Size of the committed blob, or undefined when absent. */
  stat(digest: string): Promise<number | undefined>;
  /** `length` bytes from `offset` of a committed blob; not_found when absent. */
  read(digest: string, offset: number, length: number, signal?: AbortSignal): AsyncIterable<Buffer>;
  /** Removes a committed blob; absent is not an error. */
  delete(digest: string): Promise<void>;
  /** Opens the ingest `key`, creating it empty or reopening what an earlier session kept. */
  openIngest(key: string): Promise<Ingest>;
  /** Bytes an ingest holds durably enough to be resumed by another session; undefined when there is none. */
  ingestSize(key: string): Promise<number | undefined>;
  /** Discards the ingest `key` and its bytes; absent is not an error. */
  removeIngest(key: string): Promise<void>;
  /**
   * Every committed blob with the time it was placed (for garbage collection), in no particular order; keys
   * `skip` accepts are left out before their time is looked up (on a filesystem, a stat per blob).
   */
  listBlobs(skip?: (key: string) => boolean): AsyncIterable<StoredObject>;
  /** Every ingest key the backend holds bytes for, with the time of its last write; `skip` as for listBlobs. */
  listIngests(skip?: (key: string) => boolean): AsyncIterable<StoredObject>;
  /** S3: aborts multipart uploads started before `olderThan` (a crashed writer's); returns how many. */
  abortStaleUploads?(olderThan: Date): Promise<number>;
  close(): Promise<void>;
}

/** A blob (`key` is its digest) or an ingest (`key` is the ingest key) as the backend holds it. */
export interface StoredObject {
  readonly key: string;
  readonly modifiedAt: Date;
}

/** One open ingest. Calls are made one at a time by its single writer (the ref lock guarantees it). */
export interface Ingest {
  /** Bytes held when it was opened. */
  readonly size: number;
  /** The bytes held when opened, in order: lets a writer that lost its hash state recompute it. */
  readPrefix(): AsyncIterable<Buffer>;
  /** Appends `data`. The buffer is not retained after the returned promise settles. */
  write(data: Buffer): Promise<void>;
  /** Drops every byte (containerd's truncate to 0 for a write at offset 0). */
  truncate(): Promise<void>;
  /**
   * Makes the bytes written so far durable where they are, without placing them: the slow part of a commit,
   * which the caller does before taking the locks `commit` runs under. Optional; `commit` alone suffices.
   */
  flush?(): Promise<void>;
  /**
   * Makes the bytes durable and places them at `digest`'s address, then removes the ingest. Resolves
   * 'existed' when a blob was already there (the ingest is discarded, the existing blob kept).
   */
  commit(digest: string, size: number): Promise<'created' | 'existed'>;
  /** Ends this session, keeping the bytes for a later `openIngest`. */
  suspend(): Promise<void>;
}
