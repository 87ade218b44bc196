import type { Filter } from './filter.js';
import { ALWAYS, AllOf, AnyOf, Operator, Selector } from './filter.js';
import { FilterSyntaxError } from './filter-syntax-error.js';
import { compileGoRegexp } from './go-regexp.js';
import { EOF, ILLEGAL, Scanner, Token } from './scanner.js';
import { QuoteSyntaxError, unquote } from './unquote.js';

/*
 * Grammar (containerd 1.6 `filters/parser.go`):
 *
 *   selectors := selector ("," selector)*
 *   selector  := fieldpath [operator value]
 *   fieldpath := field ("." field)*
 *   field     := quoted | [A-Za-z0-9_]+
 *   operator  := "==" | "!=" | "~="
 *   value     := quoted | <run of graphic characters other than "," and whitespace>
 *   quoted    := Go-style string quoted with "…" (for ~= values also /…/ or |…|)
 *
 * There is no OR inside one string; `|` only delimits a quoted regexp. Whitespace is skipped before a
 * field, an operator and a value, but not before "," or the end (containerd peeks without skipping).
 * Bare field parts cannot hold `-`, `/` or `:`; label keys with them must be quoted
 * (`labels."containerd.io/gc.root"`). `labels.a.b` parses as three parts; adaptors re-join the parts after
 * `labels` with `.`, so it reads the same label as `labels."a.b"`. Escapes inside `/…/` or `|…|` are the Go
 * string escapes (only the delimiter, `\\` and a b f n r t v x u U octal), so `~=/\d/` is a syntax error while
 * bare `~=\d` is fine.
 */

const COMMA = 0x2c;
const DOT = 0x2e;

/** What the `~=` selectors of one request may still spend, in regexp program instructions. */
interface RegexpBudget {
  left: number;
}

class Parser {
  private readonly scanner: Scanner;

  constructor(
    private readonly input: string,
    private readonly budget: RegexpBudget,
  ) {
    this.scanner = new Scanner(input);
  }

  private fail(position: number, reason: string): never {
    throw new FilterSyntaxError(this.input, position, reason);
  }

  selectors(): Selector[] {
    const out = [this.selector()];
    for (;;) {
      const ch = this.scanner.peek();
      if (ch === EOF) return out;
      if (ch !== COMMA) {
        const shown = ch === ILLEGAL ? '\uFFFD' : String.fromCodePoint(ch);
        this.fail(this.scanner.ppos, `unexpected input: ${shown}`);
      }
      this.scanner.scan(); // the comma
      out.push(this.selector());
    }
  }

  private selector(): Selector {
    const fieldPath = this.fieldPath();
    const ahead = this.scanner.peek();
    if (ahead === COMMA || ahead === EOF) return new Selector(fieldPath, Operator.Present, '');
    const operator = this.operator();
    const { value, pos } = this.value(operator === Operator.Matches);
    if (operator !== Operator.Matches) return new Selector(fieldPath, operator, value);
    let re: ReturnType<typeof compileGoRegexp>;
    try {
      re = compileGoRegexp(value);
    } catch (e) {
      const detail = e instanceof Error ? e.message : String(e);
      return this.fail(pos, `invalid regular expression ${JSON.stringify(value)}: ${detail}`);
    }
    this.budget.left -= re.size;
    if (this.budget.left < 0) {
      this.fail(pos, `regular expressions too large: more than ${maxRegexpProgram} instructions in one request`);
    }
    return new Selector(fieldPath, operator, value, re);
  }

  private fieldPath(): string[] {
    const parts = [this.field()];
    while (this.scanner.peek() === DOT) {
      this.scanner.scan(); // the dot
      parts.push(this.field());
    }
    return parts;
  }

  private field(): string {
    const t = this.scanner.scan();
    switch (t.token) {
      case Token.Field:
        return t.text;
      case Token.Quoted:
        return this.unquote(t.pos, t.text, false);
      case Token.Illegal:
        return this.fail(t.pos, this.scanner.err);
      default:
        return this.fail(t.pos, 'expected field or quoted');
    }
  }

  private operator(): Operator {
    const t = this.scanner.scan();
    if (t.token === Token.Illegal) this.fail(t.pos, this.scanner.err);
    if (t.token !== Token.Operator) this.fail(t.pos, 'expected an operator ("=="|"!="|"~=")');
    switch (t.text) {
      case '==':
        return Operator.Equal;
      case '!=':
        return Operator.NotEqual;
      case '~=':
        return Operator.Matches;
      default:
        return this.fail(t.pos, `unsupported operator ${JSON.stringify(t.text)}`);
    }
  }

  private value(allowRegexpQuotes: boolean): { value: string; pos: number } {
    const t = this.scanner.scan();
    switch (t.token) {
      case Token.Value:
      case Token.Field:
        return { value: t.text, pos: t.pos };
      case Token.Quoted:
        return { value: this.unquote(t.pos, t.text, allowRegexpQuotes), pos: t.pos };
      case Token.Illegal:
        return this.fail(t.pos, this.scanner.err);
      default:
        return this.fail(t.pos, 'expected value or quoted');
    }
  }

  private unquote(pos: number, literal: string, allowRegexpQuotes: boolean): string {
    if (!allowRegexpQuotes && !literal.startsWith('"')) this.fail(pos, 'invalid quote encountered');
    try {
      return unquote(literal);
    } catch (e) {
      if (e instanceof QuoteSyntaxError) return this.fail(pos, `unquoting failed: ${e.message}`);
      throw e;
    }
  }
}

/**
 * Longest filter string accepted. Matching costs O(filter × value) per object, so the cap bounds what one
 * request can make a List or a subscription spend. It leaves room for the largest label containerd allows
 * (4096 bytes of key and value), quoted with escapes.
 */
export const maxFilterLength = 16 * 1024;
/** Most filter strings in one request (they are OR-ed; ctr sends one per argument). */
export const maxFilters = 256;

/**
 * Regexp program instructions all `~=` selectors of one request may compile to. Matching costs up to this many
 * steps per character of each value tested, so this bounds what a request can make a List or subscription spend
 * per object. It admits `^a{1000}$` (about 1,000) and any everyday pattern (tens).
 */
export const maxRegexpProgram = 2500;

/** Internal: the selectors of one non-empty filter string (exposed for tests). Throws `FilterSyntaxError`. */
export function parseSelectors(input: string, budget: RegexpBudget = { left: maxRegexpProgram }): Selector[] {
  return new Parser(input, budget).selectors();
}

/**
 * Parses one filter string (comma-separated selectors, all of which must match), like containerd's
 * `filters.Parse`. The empty string yields `ALWAYS`. Throws `FilterSyntaxError` for any malformed input,
 * including a `~=` pattern that is not a valid Go regular expression.
 */
export function parseFilter(input: string, budget: RegexpBudget = { left: maxRegexpProgram }): Filter {
  if (input === '') return ALWAYS;
  if (input.length > maxFilterLength) {
    // The message quotes the input; a megabyte of it would only flood the client and the logs.
    const head = `${input.slice(0, 64)}…`;
    throw new FilterSyntaxError(head, head.length, `filter longer than ${maxFilterLength} characters`);
  }
  return new AllOf(parseSelectors(input, budget));
}

/**
 * Parses the repeated `filters` field of a List/Subscribe request, like containerd's `filters.ParseAll`:
 * the result matches an object if any string matches it. No strings, or any empty string (`ctr` sends
 * `[""]`), matches everything. Every string is parsed; the first bad one throws `FilterSyntaxError`.
 */
export function parseFilters(inputs: readonly string[]): Filter {
  if (inputs.length > maxFilters) {
    throw new FilterSyntaxError('', 0, `more than ${maxFilters} filters in one request (${inputs.length})`);
  }
  const budget = { left: maxRegexpProgram };
  const filters = inputs.map((input) => parseFilter(input, budget));
  if (filters.length === 0 || filters.includes(ALWAYS)) return ALWAYS;
  return filters.length === 1 && filters[0] !== undefined ? filters[0] : new AnyOf(filters);
}
