import {
  adaptorFromObject,
  compileGoRegexp,
  FilterSyntaxError,
  GoRegexpError,
  maxRegexpProgram,
  parseFilters,
} from '@berth/common/filters';
import { filterFuzzPieces } from '@berth/testing/filter-fuzz-pieces';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { report, runsFor, seedFor } from './src/mutate.js';

const pieces = filterFuzzPieces;

const piece = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...pieces) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 4 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 6 }) },
);
const text = fc.array(piece, { maxLength: 20 }).map((xs) => xs.join(''));
/** Mostly well-formed selectors, so the matcher (not only the parser) sees many inputs. */
const selector = fc
  .tuple(
    fc.constantFrom('name', 'labels.a', 'labels."a.b"', 'labels', 'topic', 'namespace', 'event.name', 'digest', 'x'),
    fc.constantFrom('==', '!=', '~=', '~=', ''),
    text,
    fc.constantFrom('', '"', '/', '|'),
  )
  .map(([f, op, v, q]) => (op === '' ? f : `${f}${op}${q}${v}${q}`));
const quiet = fc.constantFrom('a', 'b.c', 'x_1', '^a', 'a+$', '(?i)A', '', '牛', '[a-z]+', '\\d{2}');
const simple = fc
  .tuple(fc.constantFrom('name', 'labels.a', 'topic'), fc.constantFrom('==', '!=', '~='), quiet)
  .map((t) => t.join(''));
const filter = fc.oneof(
  { weight: 2, arbitrary: text },
  { weight: 3, arbitrary: fc.array(selector, { minLength: 1, maxLength: 3 }).map((xs) => xs.join(',')) },
  {
    weight: 2,
    arbitrary: fc.array(fc.oneof(simple, selector), { minLength: 1, maxLength: 3 }).map((xs) => xs.join(',')),
  },
);

const value = fc.oneof(
  text,
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc.nat({ max: 2000 }).map((n) => `${'a'.repeat(n)}b`),
);

/**
 * An input taking longer than this is a finding: parsing and matching are linear, bounded by the filter length
 * and regexp program caps. Generous, because long runs go at nice 19 on a shared, loaded machine.
 */
const slowMs = 5000;

describe('fuzz: filters', () => {
  it('parseFilters parses or throws FilterSyntaxError; matching never throws and stays fast', () => {
    const runs = runsFor('filters', 20_000);
    const counts = { inputs: 0, parsed: 0, rejected: 0, matched: 0 };
    let slowest = 0;
    let slowestInput = '';
    fc.assert(
      fc.property(
        fc.array(filter, { minLength: 1, maxLength: 3 }),
        value,
        fc.dictionary(text, value, { maxKeys: 3 }),
        (filters, name, labels) => {
          counts.inputs++;
          const start = performance.now();
          let f: ReturnType<typeof parseFilters>;
          try {
            f = parseFilters(filters);
            counts.parsed++;
          } catch (e) {
            if (!(e instanceof FilterSyntaxError)) throw e;
            expect(e.code).toBe('invalid_argument');
            counts.rejected++;
            return;
          }
          const m = f.match(adaptorFromObject({ name, labels, topic: name }));
          expect(typeof m).toBe('boolean');
          if (m) counts.matched++;
          const took = performance.now() - start;
          if (took > slowest) {
            slowest = took;
            slowestInput = JSON.stringify(filters).slice(0, 200);
          }
          expect(took, JSON.stringify(filters)).toBeLessThan(slowMs);
        },
      ),
      { numRuns: runs, seed: seedFor() },
    );
    report('filters', { ...counts, slowestMs: Math.round(slowest) });
    process.stdout.write(`fuzz filters slowest: ${slowestInput}\n`);
    expect(counts.parsed).toBeGreaterThan(0);
    expect(counts.rejected).toBeGreaterThan(0);
  });

  it('compileGoRegexp compiles or throws GoRegexpError, and matching is linear', () => {
    const runs = runsFor('regexp', 20_000);
    const counts = { inputs: 0, compiled: 0, rejected: 0 };
    let slowest = 0;
    fc.assert(
      fc.property(text, value, (pattern, input) => {
        counts.inputs++;
        const start = performance.now();
        let size = 0;
        try {
          const re = compileGoRegexp(pattern);
          size = re.size;
          counts.compiled++;
          re.test(input);
          re.exec(input);
        } catch (e) {
          if (!(e instanceof GoRegexpError)) throw e;
          expect(e.message).toMatch(/^error parsing regexp: /);
          counts.rejected++;
        }
        const took = performance.now() - start;
        // Beyond the parser's program budget a filter never gets to match; below it, time must stay bounded.
        if (size <= maxRegexpProgram) {
          slowest = Math.max(slowest, took);
          expect(took, JSON.stringify(pattern)).toBeLessThan(slowMs);
        }
      }),
      { numRuns: runs, seed: seedFor() },
    );
    report('regexp', { ...counts, slowestMs: Math.round(slowest) });
  });
});
