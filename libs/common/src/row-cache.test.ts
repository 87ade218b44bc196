import { describe, expect, it } from 'vitest';
import { InfoCache, infoKey } from './info-cache.js';

function liveCache(max?: number, ttlMs?: number, now?: () => number): InfoCache<string> {
  const c = new InfoCache<string>(max, ttlMs, now);
  c.reset();
  return c;
}

describe('InfoCache', () => {
  it('stores nothing until the first reset (the listen is up)', () => {
    const c = new InfoCache<string>();
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

  it('keys rows as the trigger names them', () => {
    expect(infoKey('default', 'sha256:abc')).toBe('default/sha256:abc');
  });
});
