import { describe, expect, it } from 'vitest';
import { adaptorFromObject } from './adaptor-from-object.js';
import type { FieldAdaptor } from './field-adaptor.js';
import { ALWAYS } from './filter.js';
import { FilterSyntaxError } from './filter-syntax-error.js';
import { parseFilter, parseFilters, parseSelectors } from './parser.js';

interface Entry {
  name: string;
  other?: string;
  labels?: Record<string, string>;
}

// The corpus of containerd's filter_test.go.
const corpus: Entry[] = [
  { name: 'foo', labels: { foo: 'true' } },
  { name: 'bar' },
  { name: 'foo', labels: { foo: 'present', 'more complex label': 'present' } },
  { name: 'bar', labels: { bar: 'true' } },
  { name: 'fooer', labels: { 'more complex label with \\ and "': 'present' } },
  { name: 'fooer', labels: { 'more complex label with \\ and ".post': 'present' } },
  { name: 'baz', other: 'too complex, yo' },
  { name: 'bazo', other: 'abc' },
  { name: 'compound', labels: { foo: 'omg_asdf.asdf-qwer' } },
];

const adapt = (e: Entry): FieldAdaptor => adaptorFromObject({ name: e.name, other: e.other, labels: e.labels });

/** Indices of the corpus entries the filter string selects. */
function select(input: string): number[] {
  const f = parseFilter(input);
  return corpus.flatMap((e, i) => (f.match(adapt(e)) ? [i] : []));
}

function parseError(input: string | readonly string[]): FilterSyntaxError {
  try {
    if (typeof input === 'string') parseFilter(input);
    else parseFilters(input);
  } catch (e) {
    expect(e).toBeInstanceOf(FilterSyntaxError);
    if (e instanceof FilterSyntaxError) return e;
  }
  throw new Error(`expected ${JSON.stringify(input)} to be rejected`);
}

const all = corpus.map((_, i) => i);

describe('parseFilter matching (containerd filter_test.go corpus)', () => {
  it.each<[string, string, number[]]>([
    ['empty string matches everything', '', all],
    ['presence of a field', 'name', all],
    ['presence of a label', 'labels.foo', [0, 2, 8]],
    ['comma means AND', 'labels.foo,name', [0, 2, 8]],
    ['label equality', 'labels.foo==true', [0]],
    ['bare values may hold dots, dashes and underscores', 'labels.foo==omg_asdf.asdf-qwer', [8]],
    ['name equality', 'name==bar', [1, 3]],
    ['not equal', 'name!=bar', [0, 2, 4, 5, 6, 7, 8]],
    ['equality AND presence', 'name==bar,labels.bar', [3]],
    ['a quoted value may contain a comma and spaces', 'other=="too complex, yo"', [6]],
    ['bare regexp', 'other~=[abc]+,name!=foo', [6, 7]],
    ['slash-quoted regexp', 'other~=/[abc]+/,name!=foo', [6, 7]],
    ['slash-quoted regexp containing a comma', 'other~=/[abc]{1,2}/,name!=foo', [6, 7]],
    ['valid but unmatched regexp with an escaped slash', 'other~=/[abc]{0,1}"\\//,name!=foo', []],
    ['two equalities', 'name==bar,labels.bar==true', [3]],
    ['two equalities, no match', 'name==bar,labels.bar==wrong', []],
    ['quoted field path part', 'name==foo,labels."more complex label"', [2]],
    ['escapes in a quoted field path part', 'labels."more complex label with \\\\ and \\""==present', [4]],
    [
      'a quoted part followed by a bare part is joined with a dot',
      'labels."more complex label with \\\\ and \\"".post==present',
      [5],
    ],
  ])('%s: %s', (_name, input, expected) => {
    expect(select(input)).toEqual(expected);
  });
});

describe('parseFilter errors (containerd wording)', () => {
  it.each<[string, string, string]>([
    [
      'alternative quotes are only for regexps',
      'labels.|foo|==omg_asdf.asdf-qwer',
      'filters: parse error: [labels. >|||< foo|==omg_asdf.asdf-qwer]: invalid quote encountered',
    ],
    [
      'garbage in a field path',
      'labels.?"more complex label with \\\\ and \\"".post==present',
      'filters: parse error: [labels. >|?|< "more complex label with \\\\ and \\"".post==present]: expected field or quoted',
    ],
    ['trailing comma', 'name==foo,', 'filters: parse error: [name==foo,]: expected field or quoted'],
    ['trailing field separator', 'labels.', 'filters: parse error: [labels.]: expected field or quoted'],
    ['missing value', 'image~=,id?=?fbaq', 'filters: parse error: [image~= >|,|< id?=?fbaq]: expected value or quoted'],
    [
      'slash in an unquoted field path',
      'labels.ns/key==value',
      'filters: parse error: [labels.ns >|/|< key==value]: quoted literal not terminated',
    ],
    [
      'slash-quoted value never closed',
      'labels.key==/value',
      'filters: parse error: [labels.key== >|/|< value]: quoted literal not terminated',
    ],
  ])('%s', (_name, input, message) => {
    const err = parseError(input);
    expect(err.message).toBe(message);
    expect(err.code).toBe('invalid_argument');
    expect(err.input).toBe(input);
  });

  it.each<[string, string, number]>([
    // [input, reason, position]
    ['name==', 'expected value or quoted', 6],
    ['name==  ', 'expected value or quoted', 8],
    ['name=foo', 'unsupported operator "="', 4],
    ['name===foo', 'unsupported operator "==="', 4],
    ['name=!foo', 'unsupported operator "=!"', 4],
    ['name!foo', 'unsupported operator "!"', 4],
    ['name~foo', 'unsupported operator "~"', 4],
    ['name<foo', 'expected an operator ("=="|"!="|"~=")', 4],
    ['name ,x', 'expected an operator ("=="|"!="|"~=")', 5],
    ['name==foo bar', 'unexpected input:  ', 9],
    ['name==foo ', 'unexpected input:  ', 9],
    ['name=="a"b', 'unexpected input: b', 9],
    [',name', 'expected field or quoted', 0],
    ['name,,id', 'expected field or quoted', 5],
    ['   ', 'expected field or quoted', 3],
    ['.name', 'expected field or quoted', 0],
    ['labels..x', 'expected field or quoted', 7],
    ['-x', 'expected field or quoted', 0],
    ['name==.x', 'expected value or quoted', 6],
    ['name==foo,', 'expected field or quoted', 10],
    ['"unterminated', 'quoted literal not terminated', 0],
    ['name=="unterminated', 'quoted literal not terminated', 6],
    ['name~=|unterminated', 'quoted literal not terminated', 6],
    ['labels."a\\qb"', 'illegal escape sequence', 7],
    ['labels."\\x4"', 'illegal numeric escape sequence', 7],
    ['labels."\\u12"', 'illegal numeric escape sequence', 7],
    ['labels."\\U0011000"', 'illegal numeric escape sequence', 7],
    ['labels."\\U00110000"', 'unquoting failed: quote syntax error', 7],
    ['labels."\\400"', 'unquoting failed: quote syntax error', 7],
    ['name==/foo/', 'invalid quote encountered', 6],
    ['name!=|foo|', 'invalid quote encountered', 6],
    ['name~=/\\d+/', 'illegal escape sequence', 6],
    ['name\x00==x', 'unexpected null', 4],
    ['name==x\x00', 'unexpected input: \uFFFD', 7],
    ['na\uD800me', 'rune error', 2],
  ])('%j → %s', (input, reason, position) => {
    const err = parseError(input);
    expect(err.reason).toBe(reason);
    expect(err.position).toBe(position);
    expect(err.message).toContain(`: ${reason}`);
    expect(err.message.startsWith('filters: parse error: [')).toBe(true);
  });

  it('rejects a regexp Go would not compile, at the value', () => {
    const err = parseError('name~=(abc');
    expect(err.position).toBe(6);
    expect(err.reason).toMatch(/^invalid regular expression "\(abc": error parsing regexp: missing closing \)/);
    expect(parseError('name~=a**').reason).toMatch(/invalid nested repetition operator/);
    expect(parseError('name~=(?=x)').reason).toMatch(/invalid or unsupported Perl syntax/);
    expect(parseError('name~=\\1').reason).toMatch(/invalid escape sequence/);
    expect(parseError('name~=|[z-a]|').reason).toMatch(/invalid character class range/);
  });

  it('shows the whole input when the error is at the end', () => {
    expect(parseError('name==').message).toBe('filters: parse error: [name==]: expected value or quoted');
  });
});

describe('parseSelectors (what the parser builds)', () => {
  const shape = (input: string): [readonly string[], string, string][] =>
    parseSelectors(input).map((s) => [s.fieldPath, s.operator, s.value]);

  it('splits bare dotted paths into parts and keeps quoted dots', () => {
    expect(shape('labels.a.b==1')).toEqual([[['labels', 'a', 'b'], '==', '1']]);
    expect(shape('labels."a.b"==1')).toEqual([[['labels', 'a.b'], '==', '1']]);
    expect(shape('labels."containerd.io/gc.root"')).toEqual([[['labels', 'containerd.io/gc.root'], '?', '']]);
    expect(shape('"x y".z')).toEqual([[['x y', 'z'], '?', '']]);
  });

  it('accepts digits and underscores anywhere in bare field parts', () => {
    expect(shape('9lives._x_.0')).toEqual([[['9lives', '_x_', '0'], '?', '']]);
  });

  it('skips whitespace before fields, operators and values', () => {
    expect(shape('  name  ==  foo,  id != bar')).toEqual([
      [['name'], '==', 'foo'],
      [['id'], '!=', 'bar'],
    ]);
    expect(shape('labels. x')).toEqual([[['labels', 'x'], '?', '']]);
  });

  it('takes almost any graphic character in a bare value', () => {
    expect(shape('image==docker.io/library/busybox:latest')).toEqual([
      [['image'], '==', 'docker.io/library/busybox:latest'],
    ]);
    expect(shape('a==x=y!z~"q"|r/s')).toEqual([[['a'], '==', 'x=y!z~"q"|r/s']]);
    expect(shape('a==牛😀')).toEqual([[['a'], '==', '牛😀']]);
    expect(shape('a==sha256:0123')).toEqual([[['a'], '==', 'sha256:0123']]);
  });

  it('decodes Go escapes in quoted values', () => {
    expect(shape('a=="t\\tn\\n q\\" b\\\\ x\\x41 o\\101 u\\u00e9 U\\U0001F600"')[0]?.[2]).toBe(
      't\tn\n q" b\\ x\x41 o\x41 ué U😀',
    );
    expect(shape('a=="\\xc3\\xa9"')[0]?.[2]).toBe('é'); // byte escapes form UTF-8
    expect(shape('a==""')).toEqual([[['a'], '==', '']]);
  });

  it('unquotes alternative regexp quotes with their own escape', () => {
    expect(shape('a~=/x\\/y/')).toEqual([[['a'], '~=', 'x/y']]);
    expect(shape('a~=|x\\|y|')).toEqual([[['a'], '~=', 'x|y']]);
    expect(shape('a~="x|y"')).toEqual([[['a'], '~=', 'x|y']]);
  });

  it('has no OR operator inside one string: `|` is only a quote', () => {
    expect(shape('name==a|b')).toEqual([[['name'], '==', 'a|b']]);
    expect(parseError('name==a,|b|').reason).toBe('invalid quote encountered');
    expect(parseError('name==a,|b').reason).toBe('quoted literal not terminated');
  });
});

describe('matching semantics', () => {
  const obj = adaptorFromObject({ name: 'busybox', labels: { 'a.b': 'x', empty: '' } });
  const m = (f: string): boolean => parseFilter(f).match(obj);

  it('`==` needs the field to be present', () => {
    expect(m('name==busybox')).toBe(true);
    expect(m('missing==""')).toBe(false);
    expect(m('labels.empty==""')).toBe(true);
  });

  it('`!=` and `~=` compare an absent field as the empty string', () => {
    expect(m('missing!=x')).toBe(true);
    expect(m('missing!=""')).toBe(false);
    expect(m('missing~=^$')).toBe(true);
    expect(m('labels.empty~=^$')).toBe(true);
  });

  it('regexps search anywhere in the value, Go-style', () => {
    expect(m('name~=box')).toBe(true);
    expect(m('name~=^box')).toBe(false);
    expect(m('name~=(?i)BUSY')).toBe(true);
    expect(m('name~=|^busy.ox$|')).toBe(true);
  });

  it('reads labels."a.b" and labels.a.b alike (path parts are re-joined with dots)', () => {
    expect(m('labels."a.b"==x')).toBe(true);
    expect(m('labels.a.b==x')).toBe(true);
    expect(m('labels.a')).toBe(false);
  });
});

describe('parseFilters (ParseAll)', () => {
  const img = (name: string): FieldAdaptor => adaptorFromObject({ name });

  it('matches everything for no filters, or when any string is empty', () => {
    expect(parseFilters([])).toBe(ALWAYS);
    expect(parseFilters([''])).toBe(ALWAYS);
    expect(parseFilters(['name==a', ''])).toBe(ALWAYS);
    expect(parseFilter('')).toBe(ALWAYS);
    expect(ALWAYS.match(img('x'))).toBe(true);
  });

  it('ORs the strings', () => {
    const f = parseFilters(['name==a', 'name==b']);
    expect(['a', 'b', 'c'].map((n) => f.match(img(n)))).toEqual([true, true, false]);
    const g = parseFilters(['name==a,name!=a', 'name~=^c']);
    expect(['a', 'b', 'c'].map((n) => g.match(img(n)))).toEqual([false, false, true]);
  });

  it('rejects the list when any string is bad, even next to an empty one', () => {
    expect(parseError(['', 'name==']).reason).toBe('expected value or quoted');
    expect(parseError(['name==a', ',']).input).toBe(',');
  });
});
