/**
 * Tokenizer for the filter language, following containerd 1.6's `filters/scanner.go` state machine closely
 * (including its quirks), but over UTF-16 strings: positions are string indices and characters are code
 * points. Internal to the filters module.
 */

/** Pseudo code points returned by `next`/`peek` besides real characters. */
export const EOF = -1;
export const ILLEGAL = -2;

export const Token = {
  EOF: 'eof',
  Quoted: 'quoted',
  Value: 'value',
  Field: 'field',
  Separator: 'separator',
  Operator: 'operator',
  Illegal: 'illegal',
  /** Any other single character, reported as itself (`char` holds the code point). */
  Char: 'char',
} as const;
export type Token = (typeof Token)[keyof typeof Token];

export interface Scanned {
  readonly pos: number;
  readonly token: Token;
  readonly text: string;
  /** For `Char` tokens: the code point (or EOF/ILLEGAL pseudo code point). */
  readonly char: number;
}

const spaceRe = /^\p{White_Space}$/u;
// Go's unicode.IsGraphic: letters, marks, numbers, punctuation, symbols and the ASCII/Unicode space separators.
const graphicRe = /^[\p{L}\p{M}\p{N}\p{P}\p{S}\p{Zs}]$/u;

export const isSpace = (cp: number): boolean => cp >= 0 && spaceRe.test(String.fromCodePoint(cp));
const isAlpha = (cp: number): boolean => (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a);
const isDigit = (cp: number): boolean => cp >= 0x30 && cp <= 0x39;
export const isFieldChar = (cp: number): boolean => cp === 0x5f || isAlpha(cp) || isDigit(cp);
const isOperatorChar = (cp: number): boolean => cp === 0x3d || cp === 0x21 || cp === 0x7e; // = ! ~
/** `"`, `/` and `|` open quoted literals; the parser only allows `/` and `|` for `~=` values. */
const isQuoteChar = (cp: number): boolean => cp === 0x22 || cp === 0x2f || cp === 0x7c;
const isSeparatorChar = (cp: number): boolean => cp === 0x2c || cp === 0x2e; // , .
const isValueChar = (cp: number): boolean =>
  cp >= 0 && cp !== 0x2c && !isSpace(cp) && graphicRe.test(String.fromCodePoint(cp));

function digitValue(cp: number): number {
  if (cp >= 0x30 && cp <= 0x39) return cp - 0x30;
  if (cp >= 0x61 && cp <= 0x66) return cp - 0x61 + 10;
  if (cp >= 0x41 && cp <= 0x46) return cp - 0x41 + 10;
  return 16;
}

export class Scanner {
  /** Start of the most recently read character. */
  pos = 0;
  /** End of the most recently read character (= start of the next one). */
  ppos = 0;
  /** The first scanner-level error seen (containerd keeps only the first). */
  err = '';
  /** Set after an operator: the next bare token is a value, which may hold nearly any character. */
  private valueMode = false;

  constructor(readonly input: string) {}

  next(): number {
    this.pos = this.ppos;
    if (this.ppos >= this.input.length) return EOF;
    const cp = this.input.codePointAt(this.ppos) ?? 0;
    this.ppos += cp > 0xffff ? 2 : 1;
    // Go reports invalid UTF-8 (and a literal U+FFFD) as a rune error; lone surrogates are JS's equivalent.
    if (cp === 0xfffd || (cp >= 0xd800 && cp <= 0xdfff)) {
      this.error('rune error');
      return ILLEGAL;
    }
    if (cp === 0) {
      this.error('unexpected null');
      return ILLEGAL;
    }
    return cp;
  }

  /** The next character without consuming it (no whitespace skipping: that is a containerd quirk). */
  peek(): number {
    const { pos, ppos } = this;
    const cp = this.next();
    this.pos = pos;
    this.ppos = ppos;
    return cp;
  }

  scan(): Scanned {
    let ch = this.next();
    while (isSpace(ch)) ch = this.next();
    const pos = this.pos;
    const token = (t: Token): Scanned => ({ pos, token: t, text: this.input.slice(pos, this.ppos), char: ch });

    if (ch === EOF) return { pos: this.pos, token: Token.EOF, text: '', char: ch };
    if (ch === ILLEGAL) return { pos: this.pos, token: Token.Illegal, text: '', char: ch };
    if (isQuoteChar(ch)) return token(this.scanQuoted(ch) ? Token.Quoted : Token.Illegal);
    if (isSeparatorChar(ch)) {
      this.valueMode = false;
      return token(Token.Separator);
    }
    if (isOperatorChar(ch)) {
      while (isOperatorChar(this.peek())) this.next();
      this.valueMode = true;
      return token(Token.Operator);
    }
    if (this.valueMode) {
      while (isValueChar(this.peek())) this.next();
      this.valueMode = false;
      return token(Token.Value);
    }
    if (isFieldChar(ch)) {
      while (isFieldChar(this.peek())) this.next();
      return token(Token.Field);
    }
    return { pos: this.pos, token: Token.Char, text: '', char: ch };
  }

  /** Consumes a quoted literal whose opening `quote` was just read; false when it is malformed. */
  private scanQuoted(quote: number): boolean {
    let legal = true;
    let ch = this.next();
    while (ch !== quote) {
      if (ch === 0x0a || ch < 0) {
        this.error('quoted literal not terminated');
        return false;
      }
      if (ch === 0x5c) {
        const [after, ok] = this.scanEscape(quote);
        ch = after;
        if (!ok) legal = false;
      } else {
        ch = this.next();
      }
    }
    return legal;
  }

  /** Consumes an escape after `\`; returns the character following it and whether it was legal. */
  private scanEscape(quote: number): [number, boolean] {
    const ch = this.next();
    switch (ch) {
      case 0x61:
      case 0x62:
      case 0x66:
      case 0x6e:
      case 0x72:
      case 0x74:
      case 0x76:
      case 0x5c: // a b f n r t v \
        return [this.next(), true];
      case 0x78: // x
        return this.scanDigits(this.next(), 16, 2);
      case 0x75: // u
        return this.scanDigits(this.next(), 16, 4);
      case 0x55: // U
        return this.scanDigits(this.next(), 16, 8);
      default:
        if (ch === quote) return [this.next(), true];
        if (ch >= 0x30 && ch <= 0x37) return this.scanDigits(ch, 8, 3);
        this.error('illegal escape sequence');
        return [ch, false];
    }
  }

  private scanDigits(first: number, base: number, count: number): [number, boolean] {
    let ch = first;
    let n = count;
    while (n > 0 && digitValue(ch) < base) {
      ch = this.next();
      n--;
    }
    if (n > 0) {
      this.error('illegal numeric escape sequence');
      return [ch, false];
    }
    return [ch, true];
  }

  private error(msg: string): void {
    if (this.err === '') this.err = msg;
  }
}
