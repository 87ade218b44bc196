import { filterFuzzPieces } from '@berth/testing/filter-fuzz-pieces';
import { mulberry32 as rng } from '@berth/testing/prng';
import { describe, expect, it } from 'vitest';
import { adaptorFromObject } from './adaptor-from-object.js';
import { FilterSyntaxError } from './filter-syntax-error.js';
import { compileGoRegexp, GoRegexpError } from './go-regexp.js';
import { parseFilter, parseFilters, parseSelectors } from './parser.js';

const pieces = filterFuzzPieces;

function randomString(next: () => number, maxPieces: number): string {
  const n = Math.floor(next() * maxPieces);
  let s = '';
  for (let i = 0; i < n; i++) {
    s +=
      next() < 0.15
        ? String.fromCharCode(Math.floor(next() * 0x80))
        : (pieces[Math.floor(next() * pieces.length)] ?? '');
  }
  return s;
}

const sample = adaptorFromObject({ name: 'n', labels: { a: 'x', 'a.b': '' }, other: 'too complex, yo' });

describe('fuzz', () => {
  it('parseFilter either parses or throws FilterSyntaxError, and matching never throws', () => {
    const next = rng(0xc0ffee);
    let parsed = 0;
    for (let i = 0; i < 5000; i++) {
      const input = randomString(next, 12);
      try {
        const f = parseFilter(input);
        parsed++;
        expect(typeof f.match(sample)).toBe('boolean');
      } catch (e) {
        if (!(e instanceof FilterSyntaxError)) throw new Error(`${JSON.stringify(input)} threw ${String(e)}`);
        expect(e.position).toBeGreaterThanOrEqual(0);
        expect(e.position).toBeLessThanOrEqual(input.length);
        expect(e.message.startsWith('filters: parse error: [')).toBe(true);
      }
    }
    expect(parsed).toBeGreaterThan(50); // the generator does reach valid filters
  });

  it('arbitrary UTF-16 noise never escapes as another error', () => {
    const next = rng(42);
    for (let i = 0; i < 3000; i++) {
      const len = Math.floor(next() * 24);
      let input = '';
      for (let j = 0; j < len; j++) input += String.fromCharCode(Math.floor(next() * (next() < 0.8 ? 0x80 : 0x10000)));
      try {
        parseFilters([input, input.slice(1)]).match(sample);
      } catch (e) {
        if (!(e instanceof FilterSyntaxError)) throw new Error(`${JSON.stringify(input)} threw ${String(e)}`);
      }
    }
  });

  it('compileGoRegexp either compiles or throws GoRegexpError', () => {
    const next = rng(7);
    for (let i = 0; i < 5000; i++) {
      const pattern = randomString(next, 8);
      try {
        compileGoRegexp(pattern).test('some value, 牛 😀\n');
      } catch (e) {
        if (!(e instanceof GoRegexpError)) throw new Error(`${JSON.stringify(pattern)} threw ${String(e)}`);
      }
    }
  });

  it('any label key and value survive Go-style quoting', () => {
    const next = rng(99);
    const quote = (s: string): string =>
      '"' +
      Array.from(s, (c) => {
        const cp = c.codePointAt(0) ?? 0;
        if (c === '"' || c === '\\') return `\\${c}`;
        if (cp < 0x20 || cp === 0x7f) return `\\x${cp.toString(16).padStart(2, '0')}`;
        if (cp === 0xfffd || (cp >= 0xd800 && cp <= 0xdfff)) return '?';
        if (next() < 0.1)
          return cp > 0xffff ? `\\U${cp.toString(16).padStart(8, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
        return c;
      }).join('') +
      '"';
    for (let i = 0; i < 2000; i++) {
      const key = randomString(next, 6);
      const value = randomString(next, 6);
      const filter = `labels.${quote(key)}==${quote(value)}`;
      const [sel] = parseSelectors(filter);
      const clean = (s: string): string =>
        Array.from(s, (c) => (c === '\uFFFD' || (c.length === 1 && /[\uD800-\uDFFF]/.test(c)) ? '?' : c)).join('');
      expect(sel?.fieldPath).toEqual(['labels', clean(key)]);
      expect(sel?.value).toBe(clean(value));
      expect(parseFilter(filter).match(adaptorFromObject({ labels: { [clean(key)]: clean(value) } }))).toBe(true); // a map entry is present even when empty
    }
  });

  it('stays fast on long inputs', () => {
    const long = Array.from({ length: 2000 }, (_, i) => `labels."k${i}"==v${i}`).join(',');
    const start = performance.now();
    expect(parseSelectors(long)).toHaveLength(2000);
    expect(() => parseFilter('"'.padEnd(100_000, 'a'))).toThrow(FilterSyntaxError);
    expect(() => parseFilter(`a==${'x'.repeat(100_000)},`)).toThrow(FilterSyntaxError);
    expect(performance.now() - start).toBeLessThan(5000);
  });
});
