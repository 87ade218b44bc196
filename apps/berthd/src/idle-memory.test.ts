import { describe, expect, it } from 'vitest';
import { idlePolicy } from './idle-memory.js';

const MB = 1024 * 1024;
const none = { collect: false, trim: false };
const policy = () => idlePolicy({ idleUtilization: 0.02, idleSamples: 3, trimGrowth: 2 * MB });

describe('returning memory when idle', () => {
  it('starts busy, and goes idle after enough idle samples in a row: collect, trim, idle allocator', () => {
    const p = policy();
    expect(p.sample(0.01, 200 * MB)).toEqual(none);
    expect(p.sample(0.5, 200 * MB)).toEqual(none); // busy again: the count starts over
    expect(p.sample(0.01, 200 * MB)).toEqual(none);
    expect(p.sample(0.01, 200 * MB)).toEqual(none);
    expect(p.sample(0.01, 200 * MB)).toEqual({ collect: true, trim: true, mode: 'idle' });
    p.trimmed(120 * MB);
    expect(p.sample(0.01, 120 * MB)).toEqual(none);
  });

  it('goes busy on the first busy sample, and collects again only after going idle again', () => {
    const p = policy();
    for (let i = 0; i < 3; i++) p.sample(0, 200 * MB);
    p.trimmed(120 * MB);
    expect(p.sample(0.3, 180 * MB)).toEqual({ collect: false, trim: false, mode: 'busy' });
    expect(p.sample(0.3, 250 * MB)).toEqual(none);
    expect(p.sample(0, 250 * MB)).toEqual(none);
    expect(p.sample(0, 250 * MB)).toEqual(none);
    expect(p.sample(0, 250 * MB)).toEqual({ collect: true, trim: true, mode: 'idle' });
  });

  it('trims again while idle once the resident set grew since the last trim', () => {
    const p = policy();
    for (let i = 0; i < 3; i++) p.sample(0, 200 * MB);
    p.trimmed(120 * MB);
    // Compiler threads free into their arenas while the event loop sleeps.
    expect(p.sample(0, 121 * MB)).toEqual(none);
    expect(p.sample(0, 122 * MB)).toEqual({ collect: false, trim: true });
    p.trimmed(119 * MB);
    expect(p.sample(0, 120 * MB)).toEqual(none);
  });
});
