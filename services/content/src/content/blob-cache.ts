/**
 * The bytes of small blobs (indexes, manifests, configs), least recently used first out, within a byte
 * budget. Content is addressed by its digest, so cached bytes can never be stale: whether a namespace may
 * read a blob is still decided by its Info, every time. Small blobs are read again and again (every
 * `ctr images ls`, every `ctr run` reads index, manifest and config) and a backend read costs three
 * thread-pool round trips on disk, a request on S3.
 */
export class BlobCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;

  constructor(
    /** Largest blob kept. */
    readonly maxBlob: number,
    /** Bytes kept in all. */
    private readonly budget: number,
  ) {}

  get(digest: string): Buffer | undefined {
    const b = this.entries.get(digest);
    if (b) {
      this.entries.delete(digest);
      this.entries.set(digest, b);
    }
    return b;
  }

  set(digest: string, data: Buffer): void {
    if (data.length > this.maxBlob || this.entries.has(digest)) return;
    this.entries.set(digest, data);
    this.bytes += data.length;
    for (const [d, b] of this.entries) {
      if (this.bytes <= this.budget) break;
      this.entries.delete(d);
      this.bytes -= b.length;
    }
  }

  get size(): { blobs: number; bytes: number } {
    return { blobs: this.entries.size, bytes: this.bytes };
  }
}
