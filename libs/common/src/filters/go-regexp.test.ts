import { describe, expect, it } from 'vitest';
import { compileGoRegexp, GoRegexpError } from './go-regexp.js';

const matches = (pattern: string, input: string): boolean => compileGoRegexp(pattern).test(input);

describe('compileGoRegexp: Go semantics', () => {
  it('searches unanchored, like MatchString', () => {
    expect(matches('b+', 'abbc')).toBe(true);
    expect(matches('', 'anything')).toBe(true);
    expect(matches('^a.c$', 'abc')).toBe(true);
    expect(matches('^a.c$', 'xabc')).toBe(false);
  });

  it('`.` excludes only \\n unless (?s)', () => {
    expect(matches('a.b', 'a\rb')).toBe(true);
    expect(matches('a.b', 'a\u2028b')).toBe(true);
    expect(matches('a.b', 'a\nb')).toBe(false);
    expect(matches('(?s)a.b', 'a\nb')).toBe(true);
    expect(matches('(?s:a.)b', 'a\nb')).toBe(true);
  });

  it('`^`/`$` anchor the text, or \\n-separated lines under (?m)', () => {
    expect(matches('^b', 'a\nb')).toBe(false);
    expect(matches('a$', 'a\nb')).toBe(false);
    expect(matches('a$', 'a\n')).toBe(false); // unlike Perl, Go's $ does not match before a final newline
    expect(matches('(?m)^b', 'a\nb')).toBe(true);
    expect(matches('(?m)a$', 'a\nb')).toBe(true);
    expect(matches('(?m)^b', 'a\rb')).toBe(false);
    expect(matches('\\Aa', 'ba')).toBe(false);
    expect(matches('a\\z', 'a')).toBe(true);
    expect(matches('(?m)a\\z', 'a\nb')).toBe(false);
  });

  it('Perl classes are ASCII', () => {
    expect(matches('^\\s$', '\u00a0')).toBe(false);
    expect(matches('^\\s$', '\v')).toBe(false);
    expect(matches('^\\s+$', ' \t\n\f\r')).toBe(true);
    expect(matches('^\\S$', '\u00a0')).toBe(true);
    expect(matches('^\\d$', '٣')).toBe(false);
    expect(matches('^\\w+$', 'a_Z9')).toBe(true);
    expect(matches('^\\W$', 'é')).toBe(true);
    expect(matches('^[^\\S]$', ' ')).toBe(true);
    expect(matches('^[\\d\\s]+$', '1 2')).toBe(true);
  });

  it('POSIX and Unicode classes', () => {
    expect(matches('^[[:alpha:]]+$', 'abcXYZ')).toBe(true);
    expect(matches('^[[:^digit:]]+$', 'ab')).toBe(true);
    expect(matches('^[[:^digit:]]+$', 'a1')).toBe(false);
    expect(matches('^[[:punct:]]+$', '!/:@[`{~')).toBe(true);
    expect(matches('^\\pL+$', 'héllo')).toBe(true);
    expect(matches('^\\p{Greek}+$', 'αβγ')).toBe(true);
    expect(matches('^\\P{Greek}+$', 'αβγ')).toBe(false);
    expect(matches('^\\p{^Greek}+$', 'abc')).toBe(true);
    expect(matches('^[\\p{Lu}]+$', 'AB')).toBe(true);
    expect(matches('^\\p{Any}$', '😀')).toBe(true);
  });

  it('character class details', () => {
    expect(matches('^[]a]+$', ']a')).toBe(true);
    expect(matches('^[^]a]$', 'b')).toBe(true);
    expect(matches('^[a-]+$', 'a-')).toBe(true);
    expect(matches('^[-a]+$', '-a')).toBe(true);
    expect(matches('^[a-c-e]+$', 'b-e')).toBe(true);
    expect(matches('^[a-c-e]+$', 'd')).toBe(false);
    expect(matches('^[[a]+$', '[a')).toBe(true);
    expect(matches('^[\\]\\\\]+$', ']\\')).toBe(true);
    expect(matches('^[\\x{41}-\\x{43}]+$', 'ABC')).toBe(true);
    expect(matches('^[&&|~]+$', '&&|~')).toBe(true);
  });

  it('escapes', () => {
    expect(matches('^\\Q.*+\\E$', '.*+')).toBe(true);
    expect(matches('^\\Qa.b', 'a.b')).toBe(true);
    expect(matches('^\\Qab\\E+$', 'abbb')).toBe(true);
    expect(matches('^\\x41\\x{1F600}\\101\\0\\n\\t$', 'A😀A\0\n\t')).toBe(true);
    expect(matches('^\\.\\-\\!\\#\\ \\/$', '.-!# /')).toBe(true);
    expect(matches('\\bfoo\\b', 'a foo b')).toBe(true);
    expect(matches('\\Bfoo', 'afoo')).toBe(true);
  });

  it('repetition, laziness and (?U)', () => {
    expect(compileGoRegexp('a{2,3}').exec('aaaa')?.[0]).toBe('aaa');
    expect(compileGoRegexp('a{2,3}?').exec('aaaa')?.[0]).toBe('aa');
    expect(compileGoRegexp('(?U)a+').exec('aaa')?.[0]).toBe('a');
    expect(compileGoRegexp('(?U)a+?').exec('aaa')?.[0]).toBe('aaa');
    expect(matches('^a{2}$', 'aa')).toBe(true);
    expect(matches('^a{2,}$', 'aaaaa')).toBe(true);
    expect(matches('^a{1000}$', 'a'.repeat(1000))).toBe(true);
    // A `{` that does not start a valid repeat is a literal in Go.
    expect(matches('^a{$', 'a{')).toBe(true);
    expect(matches('^a{,2}$', 'a{,2}')).toBe(true);
    expect(matches('^a{01}$', 'a{01}')).toBe(true);
    expect(matches('^x}$', 'x}')).toBe(true);
    expect(matches('^*a', 'a')).toBe(true); // Go lets an empty-width assertion be repeated
  });

  it('groups and flags', () => {
    expect(matches('^(?P<word>ab)+$', 'abab')).toBe(true);
    expect(matches('^(?<w>ab)$', 'ab')).toBe(true);
    expect(matches('^(?P<1x>a)$', 'a')).toBe(true); // Go allows names JS would not
    expect(matches('^(?:a|b)c$', 'bc')).toBe(true);
    expect(matches('(?i)ABC', 'xabcx')).toBe(true);
    expect(matches('(?i)[a-c]+$', 'ABC')).toBe(true);
    expect(matches('^a(?i)b$', 'aB')).toBe(true);
    expect(matches('^a(?i)b$', 'AB')).toBe(false);
    expect(matches('^(?i:a)b$', 'Ab')).toBe(true);
    expect(matches('^(?i:a)b$', 'AB')).toBe(false);
    expect(matches('^((?i)a)b$', 'AB')).toBe(false);
    expect(matches('^a|(?i)b$', 'B')).toBe(true);
    expect(matches('^(a|)$', '')).toBe(true);
    expect(matches('^()$', '')).toBe(true);
    expect(matches('^(?)a$', 'a')).toBe(true);
    expect(matches('^(?i:x\\d)$', 'X1')).toBe(true);
  });
});

describe('compileGoRegexp: rejected like Go', () => {
  it.each([
    ['(abc', /missing closing \)/],
    ['abc)', /unexpected \)/],
    ['[abc', /missing closing \]/],
    ['[]', /missing closing \]/],
    ['*a', /missing argument to repetition operator/],
    ['a|*', /missing argument to repetition operator/],
    ['(+)', /missing argument to repetition operator/],
    ['a**', /invalid nested repetition operator/],
    ['a*??', /invalid nested repetition operator/],
    ['a{2}{3}', /invalid nested repetition operator/],
    ['a{1001}', /invalid repeat count/],
    ['a{3,2}', /invalid repeat count/],
    ['a{99999999999}', /invalid repeat count/],
    ['\\1', /invalid escape sequence/],
    ['(a)\\1', /invalid escape sequence/],
    ['\\C', /invalid escape sequence/],
    ['\\Z', /invalid escape sequence/],
    ['\\e', /invalid escape sequence/],
    ['\\x4', /invalid escape sequence/],
    ['\\x{110000}', /invalid escape sequence/],
    ['a\\', /trailing backslash/],
    ['(?=a)', /invalid or unsupported Perl syntax/],
    ['(?!a)', /invalid or unsupported Perl syntax/],
    ['(?<=a)', /invalid or unsupported Perl syntax/],
    ['(?<!a)', /invalid or unsupported Perl syntax/],
    ['(?P=x)', /invalid or unsupported Perl syntax/],
    ['(?x)', /invalid or unsupported Perl syntax/],
    ['(?i-)', /invalid or unsupported Perl syntax/],
    ['(?-)', /invalid or unsupported Perl syntax/],
    ['(?P<>a)', /invalid named capture/],
    ['(?P<a-b>a)', /invalid named capture/],
    ['(?P<a>x)(?P<a>y)', /duplicate capture group name/],
    ['[z-a]', /invalid character class range/],
    ['[[:foo:]]', /invalid character class range/],
    ['\\p{Nope}', /invalid character class range/],
    ['\\pX', /invalid character class range/],
    ['[a-\\d]', /invalid escape sequence/],
  ])('%s', (pattern, message) => {
    expect(() => compileGoRegexp(pattern)).toThrow(GoRegexpError);
    expect(() => compileGoRegexp(pattern)).toThrow(message);
  });

  it('mixes case-sensitive and case-insensitive sections, as Go does', () => {
    expect(matches('^(?i)a(?-i)b$', 'Ab')).toBe(true);
    expect(matches('^(?i)a(?-i)b$', 'AB')).toBe(false);
    expect(matches('^(?i:[a-z])x$', 'Qx')).toBe(true);
    expect(matches('^(?i:[a-z])x$', 'QX')).toBe(false);
  });

  it('does not overflow the stack on deep nesting', () => {
    expect(() => compileGoRegexp('('.repeat(5000) + ')'.repeat(5000))).toThrow(/nests too deeply/);
  });
});

describe('compileGoRegexp: linear time', () => {
  it('answers a catastrophic-backtracking pattern over a long value in well under a second', () => {
    const long = `${'a'.repeat(10_000)}b`;
    const start = performance.now();
    for (const p of ['(a+)+$', '(a|aa)+$', '(a*)*b$', '^(a|a?)+$', '(.*a){20}$']) {
      expect(compileGoRegexp(p).test(long)).toBe(p === '(a*)*b$');
    }
    expect(performance.now() - start).toBeLessThan(1000);
  });
});
