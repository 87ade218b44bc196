import { describe, expect, it } from 'vitest';
import { Scanner, Token } from './scanner.js';

type Tok = [pos: number, token: Token, text?: string, err?: string];

function tokens(input: string): Tok[] {
  const sc = new Scanner(input);
  const out: Tok[] = [];
  for (let guard = 0; guard < 1000; guard++) {
    const t = sc.scan();
    const row: Tok = [t.pos, t.token];
    if (t.text !== '' || t.token === Token.Illegal) row.push(t.text);
    if (t.token === Token.Illegal) row.push(sc.err);
    out.push(row);
    if (t.token === Token.EOF) {
      expect(sc.scan().token).toBe(Token.EOF); // stays at EOF
      return out;
    }
  }
  throw new Error('scanner did not reach EOF');
}

const { EOF, Field, Operator, Value, Separator, Quoted, Illegal } = Token;

describe('Scanner (token streams from containerd scanner_test.go)', () => {
  const cases: [string, string, Tok[]][] = [
    [
      'a bare field',
      'name',
      [
        [0, Field, 'name'],
        [4, EOF],
      ],
    ],
    [
      'selectors with operators',
      'name==value,foo!=bar',
      [
        [0, Field, 'name'],
        [4, Operator, '=='],
        [6, Value, 'value'],
        [11, Separator, ','],
        [12, Field, 'foo'],
        [15, Operator, '!='],
        [17, Value, 'bar'],
        [20, EOF],
      ],
    ],
    [
      'field paths, and a single = is still an operator token',
      'name==value,labels.foo=value,other.bar~=match',
      [
        [0, Field, 'name'],
        [4, Operator, '=='],
        [6, Value, 'value'],
        [11, Separator, ','],
        [12, Field, 'labels'],
        [18, Separator, '.'],
        [19, Field, 'foo'],
        [22, Operator, '='],
        [23, Value, 'value'],
        [28, Separator, ','],
        [29, Field, 'other'],
        [34, Separator, '.'],
        [35, Field, 'bar'],
        [38, Operator, '~='],
        [40, Value, 'match'],
        [45, EOF],
      ],
    ],
    [
      'a bare regexp value',
      'name~=[abc]+,foo=test',
      [
        [0, Field, 'name'],
        [4, Operator, '~='],
        [6, Value, '[abc]+'],
        [12, Separator, ','],
        [13, Field, 'foo'],
        [16, Operator, '='],
        [17, Value, 'test'],
        [21, EOF],
      ],
    ],
    [
      'a backslash inside a bare value is kept',
      'name~=[abc]\\+,foo=test',
      [
        [0, Field, 'name'],
        [4, Operator, '~='],
        [6, Value, '[abc]\\+'],
        [13, Separator, ','],
        [14, Field, 'foo'],
        [17, Operator, '='],
        [18, Value, 'test'],
        [22, EOF],
      ],
    ],
    [
      'a slash-quoted regexp may contain commas',
      'name~=/[abc]{0,2}/,foo=test',
      [
        [0, Field, 'name'],
        [4, Operator, '~='],
        [6, Quoted, '/[abc]{0,2}/'],
        [18, Separator, ','],
        [19, Field, 'foo'],
        [22, Operator, '='],
        [23, Value, 'test'],
        [27, EOF],
      ],
    ],
    [
      'non-ASCII values (positions are UTF-16 indices, not bytes)',
      'name~=牛,labels.moo=true',
      [
        [0, Field, 'name'],
        [4, Operator, '~='],
        [6, Value, '牛'],
        [7, Separator, ','],
        [8, Field, 'labels'],
        [14, Separator, '.'],
        [15, Field, 'moo'],
        [18, Operator, '='],
        [19, Value, 'true'],
        [23, EOF],
      ],
    ],
    [
      'pipe-quoted non-ASCII regexp',
      'name~=|牛|,labels.moo=true',
      [
        [0, Field, 'name'],
        [4, Operator, '~='],
        [6, Quoted, '|牛|'],
        [9, Separator, ','],
        [10, Field, 'labels'],
        [16, Separator, '.'],
        [17, Field, 'moo'],
        [20, Operator, '='],
        [21, Value, 'true'],
        [25, EOF],
      ],
    ],
    [
      'escapes inside a double-quoted value',
      'name~="asdf\\n\\tfooo"',
      [
        [0, Field, 'name'],
        [4, Operator, '~='],
        [6, Quoted, '"asdf\\n\\tfooo"'],
        [20, EOF],
      ],
    ],
    [
      'a NUL character is illegal',
      'foo\x00bar',
      [
        [0, Field, 'foo'],
        [3, Illegal, '', 'unexpected null'],
        [4, Field, 'bar'],
        [7, EOF],
      ],
    ],
    [
      'spaces before tokens are skipped',
      'foo = bar    ',
      [
        [0, Field, 'foo'],
        [4, Operator, '='],
        [6, Value, 'bar'],
        [13, EOF],
      ],
    ],
    [
      'values may contain dots, dashes and underscores',
      'compound.labels==punctuated_value.foo-bar',
      [
        [0, Field, 'compound'],
        [8, Separator, '.'],
        [9, Field, 'labels'],
        [15, Operator, '=='],
        [17, Value, 'punctuated_value.foo-bar'],
        [41, EOF],
      ],
    ],
    [
      'input ending after an operator',
      'interrupted=',
      [
        [0, Field, 'interrupted'],
        [11, Operator, '='],
        [12, EOF],
      ],
    ],
    [
      'only the token after an operator is a value',
      'doublevalue=value value',
      [
        [0, Field, 'doublevalue'],
        [11, Operator, '='],
        [12, Value, 'value'],
        [18, Field, 'value'],
        [23, EOF],
      ],
    ],
    [
      'a quoted leading field',
      '"leading quote".postquote==value',
      [
        [0, Quoted, '"leading quote"'],
        [15, Separator, '.'],
        [16, Field, 'postquote'],
        [25, Operator, '=='],
        [27, Value, 'value'],
        [32, EOF],
      ],
    ],
    [
      'a missing value leaves the comma a separator',
      'input==,id!=ff',
      [
        [0, Field, 'input'],
        [5, Operator, '=='],
        [7, Separator, ','],
        [8, Field, 'id'],
        [10, Operator, '!='],
        [12, Value, 'ff'],
        [14, EOF],
      ],
    ],
    [
      'an escaped slash inside a slash-quoted regexp',
      'input~=/foo\\/bar/,id!=ff',
      [
        [0, Field, 'input'],
        [5, Operator, '~='],
        [7, Quoted, '/foo\\/bar/'],
        [17, Separator, ','],
        [18, Field, 'id'],
        [20, Operator, '!='],
        [22, Value, 'ff'],
        [24, EOF],
      ],
    ],
    [
      'a slash inside a pipe-quoted regexp',
      'input~=|foo/bar|,id!=ff',
      [
        [0, Field, 'input'],
        [5, Operator, '~='],
        [7, Quoted, '|foo/bar|'],
        [16, Separator, ','],
        [17, Field, 'id'],
        [19, Operator, '!='],
        [21, Value, 'ff'],
        [23, EOF],
      ],
    ],
    [
      'an unquoted slash in a field path opens an unterminated quote',
      'labels.containerd.io/key==value',
      [
        [0, Field, 'labels'],
        [6, Separator, '.'],
        [7, Field, 'containerd'],
        [17, Separator, '.'],
        [18, Field, 'io'],
        [20, Illegal, '/key==value', 'quoted literal not terminated'],
        [31, EOF],
      ],
    ],
    [
      'a newline ends a quoted literal',
      'labels."containerd.io\nkey"==value',
      [
        [0, Field, 'labels'],
        [6, Separator, '.'],
        [7, Illegal, '"containerd.io\n', 'quoted literal not terminated'],
        [22, Field, 'key'],
        [25, Illegal, '"==value', 'quoted literal not terminated'],
        [33, EOF],
      ],
    ],
    [
      'an unknown escape',
      'labels."\\g"',
      [
        [0, Field, 'labels'],
        [6, Separator, '.'],
        [7, Illegal, '"\\g"', 'illegal escape sequence'],
        [11, EOF],
      ],
    ],
    [
      'a short hex escape',
      'labels."\\xaz"',
      [
        [0, Field, 'labels'],
        [6, Separator, '.'],
        [7, Illegal, '"\\xaz"', 'illegal numeric escape sequence'],
        [13, EOF],
      ],
    ],
  ];

  it.each(cases)('%s', (_name, input, expected) => {
    expect(tokens(input)).toEqual(expected);
  });

  it('accepts every Go escape form inside quotes', () => {
    const lit = '"\\a\\b\\f\\n\\r\\t\\v\\\\\\"\\101\\x41\\u0041\\U00000041"';
    expect(tokens(lit)).toEqual([
      [0, Quoted, lit],
      [lit.length, EOF],
    ]);
  });

  it('only lets the opening quote character be escaped', () => {
    expect(tokens('"\\/"')[0]).toEqual([0, Illegal, '"\\/"', 'illegal escape sequence']);
    expect(tokens('/\\//')[0]).toEqual([0, Quoted, '/\\//']);
    expect(tokens('|\\||')[0]).toEqual([0, Quoted, '|\\||']);
  });

  it('reports a lone surrogate or U+FFFD as a rune error', () => {
    expect(tokens('a\uD800')[1]).toEqual([1, Illegal, '', 'rune error']);
    expect(tokens('a\uFFFD')[1]).toEqual([1, Illegal, '', 'rune error']);
  });

  it('treats astral characters as one character', () => {
    expect(tokens('a==😀x')).toEqual([
      [0, Field, 'a'],
      [1, Operator, '=='],
      [3, Value, '😀x'],
      [6, EOF],
    ]);
  });

  it('stops a value at Unicode whitespace and non-graphic characters', () => {
    expect(tokens('a==x\u00a0y')[2]).toEqual([3, Value, 'x']);
    expect(tokens('a==x\u200by')[2]).toEqual([3, Value, 'x']);
  });
});
