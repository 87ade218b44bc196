/**
 * Decoding of quoted literals (containerd's `filters/quote.go`, itself Go's `strconv.Unquote` extended so
 * that `/` and `|` delimit like `"`). Internal to the filters module.
 *
 * Go strings are bytes: `\xNN` and octal escapes produce raw bytes, `\u`/`\U` produce UTF-8. The bytes are
 * decoded as UTF-8 at the end (invalid sequences become U+FFFD).
 */

export class QuoteSyntaxError extends Error {
  constructor() {
    super('quote syntax error');
  }
}

const decoder = new TextDecoder('utf-8');
const encoder = new TextEncoder();

const simpleEscapes: Readonly<Record<string, number>> = {
  a: 0x07,
  b: 0x08,
  f: 0x0c,
  n: 0x0a,
  r: 0x0d,
  t: 0x09,
  v: 0x0b,
  '\\': 0x5c,
};

function hexValue(c: string | undefined): number {
  if (c === undefined || !/^[0-9a-fA-F]$/.test(c)) return -1;
  return parseInt(c, 16);
}

/** Returns the text quoted by `literal` (delimiters included); throws `QuoteSyntaxError` when malformed. */
export function unquote(literal: string): string {
  if (literal.length < 2) throw new QuoteSyntaxError();
  const quote = literal[0];
  if (quote !== literal[literal.length - 1] || (quote !== '"' && quote !== '/' && quote !== '|')) {
    throw new QuoteSyntaxError();
  }
  const body = literal.slice(1, -1);
  if (body.includes('\n')) throw new QuoteSyntaxError();
  if (!body.includes('\\') && !body.includes(quote)) return body;

  const bytes: number[] = [];
  let i = 0;
  while (i < body.length) {
    const c = body[i] ?? '';
    if (c === quote) throw new QuoteSyntaxError();
    if (c !== '\\') {
      const cp = body.codePointAt(i) ?? 0;
      const width = cp > 0xffff ? 2 : 1;
      for (const b of encoder.encode(body.slice(i, i + width))) bytes.push(b);
      i += width;
      continue;
    }
    const e = body[i + 1];
    if (e === undefined) throw new QuoteSyntaxError();
    i += 2;
    const simple = simpleEscapes[e];
    if (simple !== undefined) {
      bytes.push(simple);
    } else if (e === 'x' || e === 'u' || e === 'U') {
      const n = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      let v = 0;
      for (let j = 0; j < n; j++) {
        const d = hexValue(body[i + j]);
        if (d < 0) throw new QuoteSyntaxError();
        v = v * 16 + d;
      }
      i += n;
      if (e === 'x') {
        bytes.push(v);
      } else {
        if (v > 0x10ffff) throw new QuoteSyntaxError();
        // Go encodes surrogate halves as U+FFFD; TextEncoder does the same for lone surrogates.
        for (const b of encoder.encode(String.fromCodePoint(v))) bytes.push(b);
      }
    } else if (e >= '0' && e <= '7') {
      let v = e.charCodeAt(0) - 0x30;
      for (let j = 0; j < 2; j++) {
        const d = body[i + j];
        if (d === undefined || d < '0' || d > '7') throw new QuoteSyntaxError();
        v = v * 8 + (d.charCodeAt(0) - 0x30);
      }
      i += 2;
      if (v > 255) throw new QuoteSyntaxError();
      bytes.push(v);
    } else if (e === quote) {
      bytes.push(e.charCodeAt(0));
    } else {
      throw new QuoteSyntaxError();
    }
  }
  return decoder.decode(new Uint8Array(bytes));
}
