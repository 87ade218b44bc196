import { describe, expect, it } from 'vitest';
import { tricolor } from './tricolor.js';

describe('tricolor', () => {
  const graph: Record<string, string[]> = { a: ['b', 'c'], b: ['d'], c: ['b'], d: ['a'], e: ['f'], f: [] };
  const refs = (n: string): string[] => graph[n] ?? [];

  it('marks what the roots reach, cycles included, and nothing else', () => {
    expect([...tricolor(['a'], refs)].sort()).toEqual(['a', 'b', 'c', 'd']);
    expect([...tricolor(['e'], refs)].sort()).toEqual(['e', 'f']);
    expect(tricolor([], refs).size).toBe(0);
  });

  it('expands each node once and marks it under its normalized identity', () => {
    const calls: string[] = [];
    const marked = tricolor(
      ['x!', 'x'],
      (n) => {
        calls.push(n);
        return n === 'x' ? ['y'] : [];
      },
      (n) => n.replace('!', ''),
    );
    expect([...marked].sort()).toEqual(['x', 'y']);
    expect(calls.sort()).toEqual(['x', 'x!', 'y']);
  });
});
