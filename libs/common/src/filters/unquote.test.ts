import { describe, expect, it } from 'vitest';
import { QuoteSyntaxError, unquote } from './unquote.js';

describe('unquote (quote.go)', () => {
  it('returns plain bodies unchanged for every quote character', () => {
    expect(unquote('"abc"')).toBe('abc');
    expect(unquote('/a"b/')).toBe('a"b');
    expect(unquote('|a/b|')).toBe('a/b');
    expect(unquote('""')).toBe('');
  });

  it('decodes the single-character escapes', () => {
    expect(unquote('"\\a\\b\\f\\n\\r\\t\\v\\\\\\""')).toBe('\x07\b\f\n\r\t\v\\"');
  });

  it('decodes hex and octal escapes as bytes and \\u/\\U as code points', () => {
    expect(unquote('"\\x41\\101\\u00e9\\U0001F600"')).toBe('AAé😀');
    expect(unquote('"\\xe7\\x89\\x9b"')).toBe('牛');
    expect(unquote('"\\377"')).toBe('\uFFFD'); // a lone 0xff byte is not UTF-8
    expect(unquote('"\\ud800"')).toBe('\uFFFD'); // Go encodes surrogate halves as U+FFFD
  });

  it('keeps non-ASCII text', () => {
    expect(unquote('"牛 😀\\n"')).toBe('牛 😀\n');
  });

  it('allows escaping only the delimiting quote', () => {
    expect(unquote('/\\//')).toBe('/');
    expect(unquote('|\\||')).toBe('|');
    for (const bad of ['"\\/"', '"\\|"', '/\\"/', '"\\\'"', '"\\q"']) {
      expect(() => unquote(bad), bad).toThrow(QuoteSyntaxError);
    }
  });

  it('rejects malformed literals', () => {
    for (const bad of [
      '"',
      '"a',
      'a"',
      '"a/',
      "'a'",
      '`a`',
      '"a\nb"',
      '"a"b"',
      '"\\"',
      '"\\x4"',
      '"\\x4g"',
      '"\\12"',
      '"\\400"',
      '"\\U00110000"',
      '"\\u12"',
    ]) {
      expect(() => unquote(bad), JSON.stringify(bad)).toThrow(QuoteSyntaxError);
    }
  });
});
