import { describe, expect, it } from 'vitest';
import { adaptorFromObject } from './adaptor-from-object.js';
import { FilterSyntaxError } from './filter-syntax-error.js';
import { maxFilterLength, maxFilters, parseFilter, parseFilters } from './parser.js';

describe('filter limits', () => {
  it('accepts a filter of the maximum length', () => {
    const value = 'v'.repeat(maxFilterLength - 'labels.k=='.length);
    expect(parseFilter(`labels.k==${value}`).match(adaptorFromObject({ labels: { k: value } }))).toBe(true);
  });

  it('refuses a longer one as invalid_argument, quoting only its start', () => {
    const input = `name~=${'a'.repeat(maxFilterLength)}`;
    let err: unknown;
    try {
      parseFilter(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FilterSyntaxError);
    const e = err as FilterSyntaxError;
    expect(e.code).toBe('invalid_argument');
    expect(e.message).toContain(`filter longer than ${maxFilterLength} characters`);
    expect(e.message.length).toBeLessThan(200);
  });

  it('refuses more filter strings than the cap in one request', () => {
    expect(() => parseFilters(Array.from({ length: maxFilters }, (_, i) => `name==n${i}`))).not.toThrow();
    expect(() => parseFilters(Array.from({ length: maxFilters + 1 }, (_, i) => `name==n${i}`))).toThrow(
      /more than 256 filters in one request/,
    );
  });
});

describe('regexp program budget (found by fuzz/filters.fuzz.test.ts: `.{1000}b` took 350 ms per 4,000-character value)', () => {
  it('admits Go-sized repeats but refuses a request whose regexps together compile too large', () => {
    expect(() => parseFilter('name~=^a{1000}$')).not.toThrow();
    expect(() => parseFilter('name~=x.{1000},labels.a~=x.{1000},labels.b~=x.{1000}')).toThrow(
      /regular expressions too large: more than 2500 instructions in one request/,
    );
    // The budget spans every string of the request, not each alone.
    expect(() => parseFilters(['name~=x.{1000}', 'name~=x.{1000}', 'name~=x.{1000}'])).toThrow(FilterSyntaxError);
    expect(() => parseFilters(['name~=x.{1000}', 'name~=x.{1000}'])).not.toThrow();
  });
});
