import { describe, expect, it } from 'vitest';
import type { Db } from './db.js';
import { listenRowCache, RowCache, rowKey } from './row-cache.js';

function liveCache(max?: number, ttlMs?: number, now?: () => number): RowCache<string> {
  const c = new RowCache<string>(max, ttlMs, now);
  c.reset();
  return c;
}

/** A promise and the functions that settle it, for ordering a load against an invalidation. */
function deferred<T>(): { promise: Promise<T>; resolve(v: T): void } {
  let resolve: (v: T) => void = () => undefined;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('RowCache', () => {
  it('stores nothing until the first reset (the listen is up)', () => {
    const c = new RowCache<string>();
    c.set('a', 'A', c.epoch());
    expect(c.get('a')).toBeUndefined();
    c.reset();
    c.set('a', 'A', c.epoch());
    expect(c.get('a')).toBe('A');
  });

  it('does not store a fill that raced with a forget of any key', () => {
    const c = liveCache();
    const epoch = c.epoch();
    c.forget('other');
    c.set('a', 'stale', epoch);
    expect(c.get('a')).toBeUndefined();
    c.set('a', 'fresh', c.epoch());
    expect(c.get('a')).toBe('fresh');
  });

  it('does not store a fill that raced with a reset', () => {
    const c = liveCache();
    const epoch = c.epoch();
    c.reset();
    c.set('a', 'stale', epoch);
    expect(c.get('a')).toBeUndefined();
  });

  it('forget drops the key; reset drops everything', () => {
    const c = liveCache();
    c.set('a', 'A', c.epoch());
    c.set('b', 'B', c.epoch());
    c.forget('a');
    expect(c.get('a')).toBeUndefined();
    expect(c.get('b')).toBe('B');
    c.reset();
    expect(c.get('b')).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('keeps at most `max` entries, evicting the least recently used', () => {
    const c = liveCache(3);
    for (const k of ['a', 'b', 'c']) c.set(k, k.toUpperCase(), c.epoch());
    expect(c.get('a')).toBe('A');
    c.set('d', 'D', c.epoch());
    expect(c.size).toBe(3);
    expect(c.get('b')).toBeUndefined();
    expect([c.get('a'), c.get('c'), c.get('d')]).toEqual(['A', 'C', 'D']);
  });

  it('gives entries used since they were last passed over a second chance, once', () => {
    const c = liveCache(3);
    for (const k of ['a', 'b', 'c']) c.set(k, k.toUpperCase(), c.epoch());
    c.get('a');
    c.get('b');
    c.set('d', 'D', c.epoch()); // a and b are passed over (their marks cleared), c goes
    expect(c.get('c')).toBeUndefined();
    // Order is now d, a, b: d is the oldest and unused, so it goes before the two that were passed over.
    c.set('e', 'E', c.epoch());
    expect([c.get('d'), c.get('a'), c.get('b'), c.get('e')]).toEqual([undefined, 'A', 'B', 'E']);
  });

  it('expires entries after the ttl, even without a notification', () => {
    let now = 1_000;
    const c = liveCache(10, 60_000, () => now);
    c.set('a', 'A', c.epoch());
    now += 59_999;
    expect(c.get('a')).toBe('A');
    now += 1;
    expect(c.get('a')).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('read loads a miss once, then answers from memory; an absent row is not kept', async () => {
    const c = liveCache();
    let loads = 0;
    const load = async (): Promise<string | undefined> => (++loads === 1 ? undefined : 'A');
    expect(await c.read('a', load)).toBeUndefined();
    expect(await c.read('a', load)).toBe('A');
    expect(await c.read('a', load)).toBe('A');
    expect(loads).toBe(2);
  });

  it('read does not keep a load that an invalidation overtook', async () => {
    const c = liveCache();
    const row = deferred<string>();
    const reading = c.read('a', () => row.promise);
    c.forget('a');
    row.resolve('stale');
    expect(await reading).toBe('stale');
    expect(c.get('a')).toBeUndefined();
  });

  it('writing forgets the key before the write and again after it, whether it succeeds or fails', async () => {
    const c = liveCache();
    c.set('a', 'old', c.epoch());
    const commit = deferred<void>();
    const write = c.writing('a', async () => {
      expect(c.get('a')).toBeUndefined();
      await commit.promise;
      return 'done';
    });
    // A lookup racing the transaction still sees the old row and stores it...
    c.set('a', 'old', c.epoch());
    commit.resolve();
    expect(await write).toBe('done');
    // ...but the write's own forget after commit removes it.
    expect(c.get('a')).toBeUndefined();

    c.set('b', 'old', c.epoch());
    await expect(
      c.writing('b', async () => {
        c.set('b', 'old', c.epoch());
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    expect(c.get('b')).toBeUndefined();
  });

  it('keys namespaced rows as the triggers name them', () => {
    expect(rowKey('default', 'sha256:abc')).toBe('default/sha256:abc');
    expect(rowKey('default', 'docker.io/library/busybox:latest')).toBe('default/docker.io/library/busybox:latest');
  });
});

describe('listenRowCache', () => {
  it('forgets notified keys, drops everything on an empty payload or a reset, and starts the cache', async () => {
    let notify: (payload: string) => void = () => undefined;
    let reset: () => void = () => undefined;
    const db: Pick<Db, 'listen'> = {
      listen: async (channel, onNotify, onReset) => {
        expect(channel).toBe('berth_t_rows');
        notify = onNotify;
        reset = onReset;
        onReset();
        return async () => undefined;
      },
    };
    const c = new RowCache<string>();
    await listenRowCache(db, 'berth_t_rows', c);
    for (const k of ['ns/a', 'ns/b', 'ns/c']) c.set(k, k, c.epoch());
    notify('ns/a');
    expect([c.get('ns/a'), c.get('ns/b')]).toEqual([undefined, 'ns/b']);
    notify('');
    expect(c.size).toBe(0);
    c.set('ns/b', 'B', c.epoch());
    reset();
    expect(c.get('ns/b')).toBeUndefined();
  });
});
