/**
 * Content Info rows kept in this process, coherent across replicas through the database: a trigger on
 * `content.blobs` notifies `namespace/digest` for every row written (migration 2), and the listener calls
 * `forget` with it. Only rows seen to exist are kept.
 *
 * A lookup that raced with an invalidation must not be stored, or it could keep a row the notification
 * already removed: read `epoch()` before the query and pass it to `set`, which stores only when nothing was
 * forgotten or reset since. Nothing is stored before the first `reset()` (the listen is up), and every
 * entry expires after `ttlMs`, a backstop for a listen connection that died without anyone noticing.
 */
export class InfoCache<V> {
  private readonly entries = new Map<string, { value: V; until: number }>();
  private generation = 0;
  private live = false;

  constructor(
    private readonly max = 65_536,
    private readonly ttlMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: string): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.entries.delete(key);
    if (e.until <= this.now()) return undefined;
    // Re-inserted so Map order is recency order and eviction takes the least recently used.
    this.entries.set(key, e);
    return e.value;
  }

  /** The invalidation epoch: changes with every `forget` and `reset`. */
  epoch(): number {
    return this.generation;
  }

  /** Stores `value` unless the cache is not live yet or anything was invalidated since `epoch` was read. */
  set(key: string, value: V, epoch: number): void {
    if (!this.live || epoch !== this.generation) return;
    this.entries.delete(key);
    this.entries.set(key, { value, until: this.now() + this.ttlMs });
    if (this.entries.size > this.max) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }

  forget(key: string): void {
    this.generation++;
    this.entries.delete(key);
  }

  /** Drops everything and starts caching: the listen was (re)established, notifications may have been lost. */
  reset(): void {
    this.generation++;
    this.entries.clear();
    this.live = true;
  }

  get size(): number {
    return this.entries.size;
  }
}

/** The cache key of a blob row, as the trigger sends it: namespaces and digests never contain `/`. */
export const infoKey = (ns: string, digest: string): string => `${ns}/${digest}`;
