import { evictOverflow } from '@berth/common/row-cache';

/**
 * The bytes of small blobs (indexes, manifests, configs), least recently used first out (roughly: CLOCK), within a byte
 * budget. Content is addressed by its digest, so cached bytes can never be stale: whether a namespace may
 * read a blob is still decided by its Info, every time. Small blobs are read again and again (every
 * `ctr images ls`, every `ctr run` reads index, manifest and config) and a backend read costs three
 * thread-pool round trips on disk, a request on S3.
 */
export class BlobCache {
  private readonly entries = new Map<string, { data: Buffer; used: boolean }>();
  private bytes = 0;

  constructor(
    /** Largest blob kept. */
    readonly maxBlob: number,
    /** Bytes kept in all. */
    private readonly budget: number,
  ) {}

  get(digest: string): Buffer | undefined {
    const e = this.entries.get(digest);
    if (!e) return undefined;
    e.used = true;
    return e.data;
  }

  set(digest: string, data: Buffer): void {
    if (data.length > this.maxBlob || this.entries.has(digest)) return;
    this.entries.set(digest, { data, used: false });
    this.bytes += data.length;
    evictOverflow(
      this.entries,
      () => this.bytes > this.budget,
      (e) => {
        this.bytes -= e.data.length;
      },
    );
  }

  get size(): { blobs: number; bytes: number } {
    return { blobs: this.entries.size, bytes: this.bytes };
  }
}
