import type { Db } from './db.js';

/**
 * Rows of one table kept in this process, coherent across replicas through the database: a row trigger on the
 * table notifies the row's key for every row inserted, updated or deleted, by any writer, and `listenRowCache`
 * forgets that key here. A service keeps its hot reads in one and still answers as the database would.
 *
 * A lookup that raced with an invalidation must not be stored, or it could keep a row the notification
 * already removed: read `epoch()` before the query and pass it to `set`, which stores only when nothing was
 * forgotten or reset since (`read` does both). Nothing is stored before the first `reset()` (the listen is up),
 * and every entry expires after `ttlMs`, a backstop for a listen connection that died without anyone noticing.
 */
export class RowCache<V> {
  private readonly entries = new Map<string, { value: V; until: number; used: boolean }>();
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
    if (e.until <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    // Marked rather than moved: a hit is a lookup only, which matters at thousands of hits a second.
    e.used = true;
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
    this.entries.set(key, { value, until: this.now() + this.ttlMs, used: false });
    evictOverflow(this.entries, () => this.entries.size > this.max);
  }

  /** The value of `key`: from memory, else `load()`'s, kept when defined and nothing was invalidated meanwhile. */
  async read(key: string, load: () => Promise<V | undefined>): Promise<V | undefined> {
    const cached = this.get(key);
    if (cached !== undefined) return cached;
    const epoch = this.epoch();
    const value = await load();
    if (value !== undefined) this.set(key, value, epoch);
    return value;
  }

  /**
   * Runs a write of the row `key` made in this process. The key is forgotten before, and again once the write
   * settles, for read-your-writes without waiting for the notification: a lookup racing the transaction may
   * have stored the row it still saw.
   */
  async writing<T>(key: string, write: () => Promise<T>): Promise<T> {
    this.forget(key);
    try {
      return await write();
    } finally {
      this.forget(key);
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

/**
 * Evicts entries oldest first while `over()`, giving each one used since it was last passed over a second
 * chance (CLOCK, an approximation of least recently used that needs no reordering on a hit).
 */
export function evictOverflow<E extends { used: boolean }>(
  entries: Map<string, E>,
  over: () => boolean,
  onEvict: (e: E) => void = () => undefined,
): void {
  while (over()) {
    const first = entries.entries().next();
    if (first.done) return;
    const [key, e] = first.value;
    entries.delete(key);
    if (e.used) {
      e.used = false;
      entries.set(key, e);
    } else {
      onEvict(e);
    }
  }
}

/** The key of a namespaced row, as the triggers send it: namespaces never contain `/`, the id may. */
export const rowKey = (namespace: string, id: string): string => `${namespace}/${id}`;

/** The namespace part of a `rowKey`. */
export const rowKeyNamespace = (key: string): string => {
  const slash = key.indexOf('/');
  return slash < 0 ? key : key.slice(0, slash);
};

/**
 * Keeps `cache` coherent with the table whose trigger notifies on `channel`: each payload is a key to forget;
 * an empty payload (a key too long for a NOTIFY, or a TRUNCATE) and every (re)listen drop everything.
 * The cache starts caching once the listen is up. Resolves an unlisten.
 */
export function listenRowCache(
  db: Pick<Db, 'listen'>,
  channel: string,
  cache: Pick<RowCache<unknown>, 'forget' | 'reset'>,
): Promise<() => Promise<void>> {
  return db.listen(
    channel,
    (key) => (key === '' ? cache.reset() : cache.forget(key)),
    () => cache.reset(),
  );
}
