/**
 * Compiles a Go (RE2) regular expression, as containerd's `~=` operator does with `regexp.Compile`, into an
 * equivalent JavaScript RegExp. Internal to the filters module.
 *
 * The pattern is parsed with Go's rules (what Go rejects is rejected here: backreferences, lookarounds,
 * `\C`, nested repetition, repeat counts over 1000, unknown classes, …) and re-emitted in JS `v`-mode
 * syntax with Go's semantics made explicit: `.` excludes only `\n`, `^`/`$` are text (or, under `(?m)`,
 * `\n`-line) anchors, `\s` is ASCII whitespace, POSIX `[[:alpha:]]` classes, `\pN`/`\p{Greek}`, `\Q…\E`,
 * `(?P<name>…)`, and the `i`, `m`, `s`, `U` flags.
 *
 * Known limits: a case-insensitivity flag that covers only part of a pattern (`a(?i)b`, `(?i:x)y`) is
 * supported for literal characters but rejected around character classes; JS backtracking is not linear
 * time like RE2, so pathological patterns can be slow on long values.
 */

export class GoRegexpError extends Error {
  constructor(code: string, expr: string) {
    super(`error parsing regexp: ${code}: \`${expr}\``);
  }
}

interface Flags {
  i: boolean;
  m: boolean;
  s: boolean;
  U: boolean;
}

const maxRepeat = 1000;
const maxDepth = 1000;

/** Go's ASCII-only Perl classes. */
const perlClasses: Readonly<Record<string, string>> = {
  d: '0-9',
  s: '\\t\\n\\f\\r ',
  w: '0-9A-Za-z_',
};

const posixClasses: Readonly<Record<string, string>> = {
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\u{0}-\\u{7f}',
  blank: '\\t ',
  cntrl: '\\u{0}-\\u{1f}\\u{7f}',
  digit: '0-9',
  graph: '\\u{21}-\\u{7e}',
  lower: 'a-z',
  print: '\\u{20}-\\u{7e}',
  punct: '\\u{21}-\\u{2f}\\u{3a}-\\u{40}\\u{5b}-\\u{60}\\u{7b}-\\u{7e}',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '0-9A-Za-z_',
  xdigit: '0-9A-Fa-f',
};

/** A code point as a JS pattern atom that means itself in any context of a `v`-mode pattern. */
function lit(cp: number): string {
  const isWord = (cp >= 0x30 && cp <= 0x39) || (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a);
  return isWord ? String.fromCodePoint(cp) : `\\u{${cp.toString(16)}}`;
}

function caseVariants(cp: number): number[] {
  const s = String.fromCodePoint(cp);
  const out = new Set<number>([cp]);
  for (const v of [s.toLowerCase(), s.toUpperCase()]) {
    const c = v.codePointAt(0);
    if (c !== undefined && [...v].length === 1) out.add(c);
  }
  return [...out];
}

const isOctal = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '7';
const isHex = (c: string | undefined): boolean => c !== undefined && /^[0-9A-Fa-f]$/.test(c);
const isAlnum = (c: string): boolean => /^[0-9A-Za-z]$/.test(c);

class Translator {
  private readonly chars: string[];
  private i = 0;
  private readonly names = new Set<string>();
  private depth = 0;

  constructor(
    private readonly pattern: string,
    private readonly globalFold: boolean,
  ) {
    this.chars = Array.from(pattern);
  }

  private peek(offset = 0): string | undefined {
    return this.chars[this.i + offset];
  }

  private rest(): string {
    return this.chars.slice(this.i).join('');
  }

  private fail(code: string, expr: string = this.pattern): never {
    throw new GoRegexpError(code, expr);
  }

  translate(): string {
    const flags: Flags = { i: false, m: false, s: false, U: false };
    const out = this.alternation(flags);
    if (this.i < this.chars.length) this.fail('unexpected )');
    return out;
  }

  /** Parses alternatives until `)` or the end; `flags` is the group's (mutable) flag scope. */
  private alternation(flags: Flags): string {
    const branches: string[] = [this.sequence(flags)];
    while (this.peek() === '|') {
      this.i++;
      branches.push(this.sequence(flags));
    }
    return branches.join('|');
  }

  private sequence(flags: Flags): string {
    const atoms: string[] = [];
    let lastRepeat = ''; // the repetition operator just parsed, if any
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === '|' || c === ')') return atoms.join('');
      const start = this.i;
      if (c === '*' || c === '+' || c === '?' || (c === '{' && this.repeatAhead() !== undefined)) {
        let quant: string;
        if (c === '{') {
          const r = this.repeatAhead();
          if (r === undefined) return this.fail('internal error');
          this.i += r.length;
          const [min, max] = r.bounds;
          if (min > maxRepeat || max > maxRepeat || (max >= 0 && min > max)) this.fail('invalid repeat count', r.text);
          quant = max === min ? `{${min}}` : max < 0 ? `{${min},}` : `{${min},${max}}`;
        } else {
          this.i++;
          quant = c;
        }
        let lazy = false;
        if (this.peek() === '?') {
          this.i++;
          lazy = true;
        }
        const opText = this.chars.slice(start, this.i).join('');
        if (lastRepeat !== '') this.fail('invalid nested repetition operator', lastRepeat + opText);
        if (atoms.length === 0) this.fail('missing argument to repetition operator', opText);
        if (flags.U) lazy = !lazy;
        atoms.push(`${atoms.pop() ?? ''}${quant}${lazy ? '?' : ''}`);
        lastRepeat = opText;
        continue;
      }
      lastRepeat = '';
      // A flag group such as (?i) yields nothing; like Go, a following repetition applies to the atom before it.
      for (const a of this.atom(flags) ?? []) atoms.push(a);
    }
  }

  /** If a valid Go repeat `{n}`, `{n,}` or `{n,m}` starts here, its length and bounds (max -1 = unbounded). */
  private repeatAhead(): { length: number; bounds: [number, number]; text: string } | undefined {
    const m = /^\{([0-9]+)(,([0-9]*))?\}/.exec(this.rest());
    if (!m) return undefined;
    const num = (s: string): number | undefined =>
      s.length > 1 && s.startsWith('0') ? undefined : s.length > 8 ? Number.MAX_SAFE_INTEGER : Number(s);
    const min = num(m[1] ?? '');
    const maxText = m[3];
    const max = m[2] === undefined ? min : maxText === '' || maxText === undefined ? -1 : num(maxText);
    if (min === undefined || max === undefined) return undefined;
    return { length: m[0].length, bounds: [min, max], text: m[0] };
  }

  /** Parses one atom; returns the emitted pieces (several for `\Q…\E`), or undefined for a flag group. */
  private atom(flags: Flags): string[] | undefined {
    const c = this.peek() ?? '';
    switch (c) {
      case '(':
        return this.group(flags);
      case '[':
        return [this.charClass(flags)];
      case '.':
        this.i++;
        return [flags.s ? '[\\s\\S]' : '[^\\n]'];
      case '^':
        this.i++;
        return [flags.m ? '(?:(?<![^\\n]))' : '(?:(?<![\\s\\S]))'];
      case '$':
        this.i++;
        return [flags.m ? '(?:(?![^\\n]))' : '(?:(?![\\s\\S]))'];
      case '\\':
        return this.escapeAtom(flags);
      default: {
        this.i++;
        return [this.literal(c.codePointAt(0) ?? 0, flags)];
      }
    }
  }

  private literal(cp: number, flags: Flags): string {
    const variants = caseVariants(cp);
    if (variants.length === 1 || flags.i === this.globalFold) return lit(cp);
    if (flags.i) return `[${variants.map(lit).join('')}]`;
    return this.fail('case-sensitive section inside a case-insensitive pattern is not supported');
  }

  private group(outer: Flags): string[] | undefined {
    const start = this.i;
    this.i++; // (
    let capture = true;
    const inner: Flags = { ...outer };
    if (this.peek() === '?') {
      const t = this.chars.slice(this.i + 1, this.i + 3).join('');
      if (t.startsWith('P<') || (t.startsWith('<') && t !== '<=' && t !== '<!')) {
        this.i += t.startsWith('P') ? 3 : 2;
        const end = this.chars.indexOf('>', this.i);
        const name = end < 0 ? '' : this.chars.slice(this.i, end).join('');
        if (end < 0) this.fail('invalid named capture', this.chars.slice(start).join(''));
        if (!/^[0-9A-Za-z_]+$/.test(name))
          this.fail('invalid named capture', this.chars.slice(start, end + 1).join(''));
        if (this.names.has(name)) this.fail('duplicate capture group name', name);
        this.names.add(name);
        this.i = end + 1;
      } else {
        // Flags: (?flags) applies to the rest of the current group, (?flags:re) to re only.
        this.i++;
        let sign = 1;
        let sawFlag = false;
        const target: Flags = { ...outer };
        for (;;) {
          const f = this.peek();
          this.i++;
          if (f === 'i' || f === 'm' || f === 's' || f === 'U') {
            target[f] = sign > 0;
            sawFlag = true;
          } else if (f === '-' && sign > 0) {
            sign = -1;
            sawFlag = false;
          } else if ((f === ':' || f === ')') && (sign > 0 || sawFlag)) {
            if (f === ')') {
              Object.assign(outer, target);
              return undefined;
            }
            Object.assign(inner, target);
            capture = false;
            break;
          } else {
            return this.fail('invalid or unsupported Perl syntax', this.chars.slice(start, this.i).join(''));
          }
        }
      }
    }
    if (++this.depth > maxDepth) this.fail('expression nests too deeply');
    const body = this.alternation(inner);
    this.depth--;
    if (this.peek() !== ')') this.fail('missing closing )');
    this.i++;
    return [capture ? `(${body})` : `(?:${body})`];
  }

  private escapeAtom(flags: Flags): string[] {
    const e = this.peek(1);
    switch (e) {
      case 'A':
        this.i += 2;
        return ['(?:(?<![\\s\\S]))'];
      case 'z':
        this.i += 2;
        return ['(?:(?![\\s\\S]))'];
      case 'b':
      case 'B':
        this.i += 2;
        return [`(?:\\${e})`];
      case 'Q': {
        this.i += 2;
        const out: string[] = [];
        while (this.i < this.chars.length) {
          if (this.peek() === '\\' && this.peek(1) === 'E') {
            this.i += 2;
            break;
          }
          out.push(this.literal((this.peek() ?? '').codePointAt(0) ?? 0, flags));
          this.i++;
        }
        return out;
      }
      case 'C':
        return this.fail('invalid escape sequence', '\\C');
      default: {
        const set = this.classEscape();
        if (set !== undefined) {
          // \d, \s, \w are caseless; \p classes are not.
          if (flags.i !== this.globalFold && /^\\[pP]/.test(set)) this.checkFoldSet();
          return [set];
        }
        return [this.literal(this.escapeChar(), flags)];
      }
    }
  }

  /** `\d`, `\D`, `\pN`, `\P{Greek}`, … at the cursor as a nested JS class; undefined if not a class escape. */
  private classEscape(): string | undefined {
    const e = this.peek(1);
    if (e === undefined) return undefined;
    const lower = e.toLowerCase();
    const perl = perlClasses[lower];
    if (perl !== undefined && (e === lower || e === lower.toUpperCase())) {
      this.i += 2;
      return e === lower ? `[${perl}]` : `[^${perl}]`;
    }
    if (e !== 'p' && e !== 'P') return undefined;
    const start = this.i;
    this.i += 2;
    let name: string;
    if (this.peek() === '{') {
      const end = this.chars.indexOf('}', this.i);
      if (end < 0) this.fail('invalid character class range', this.chars.slice(start).join(''));
      name = this.chars.slice(this.i + 1, end).join('');
      this.i = end + 1;
    } else {
      name = this.peek() ?? '';
      if (name === '') this.fail('invalid character class range', `\\${e}`);
      this.i++;
    }
    let negate = e === 'P';
    if (name.startsWith('^')) {
      negate = !negate;
      name = name.slice(1);
    }
    const expr = this.chars.slice(start, this.i).join('');
    if (!/^[A-Za-z_]+$/.test(name)) this.fail('invalid character class range', expr);
    const prop = name === 'Any' || /^[A-Z][a-z]?$/.test(name) ? name : `Script=${name}`;
    const js = `\\${negate ? 'P' : 'p'}{${prop}}`;
    try {
      new RegExp(js, 'v');
    } catch {
      this.fail('invalid character class range', expr);
    }
    return js;
  }

  /** A single-character escape (`\n`, `\x{263a}`, `\123`, `\.`…) at the cursor; returns the code point. */
  private escapeChar(): number {
    this.i++; // backslash
    const c = this.peek();
    if (c === undefined) return this.fail('trailing backslash at end of expression', '');
    this.i++;
    switch (c) {
      case 'a':
        return 0x07;
      case 'f':
        return 0x0c;
      case 'n':
        return 0x0a;
      case 'r':
        return 0x0d;
      case 't':
        return 0x09;
      case 'v':
        return 0x0b;
      case 'x': {
        if (this.peek() === '{') {
          const end = this.chars.indexOf('}', this.i);
          const digits = end < 0 ? '' : this.chars.slice(this.i + 1, end).join('');
          if (end < 0 || !/^[0-9A-Fa-f]+$/.test(digits) || parseInt(digits, 16) > 0x10ffff) {
            this.fail(
              'invalid escape sequence',
              `\\x${this.chars.slice(this.i, end < 0 ? undefined : end + 1).join('')}`,
            );
          }
          this.i = end + 1;
          return parseInt(digits, 16);
        }
        const h = (this.peek() ?? '') + (this.peek(1) ?? '');
        if (!isHex(this.peek()) || !isHex(this.peek(1))) this.fail('invalid escape sequence', `\\x${h}`);
        this.i += 2;
        return parseInt(h, 16);
      }
      default:
        break;
    }
    if (c >= '1' && c <= '7' && !isOctal(this.peek())) this.fail('invalid escape sequence', `\\${c}`);
    if (c >= '0' && c <= '7') {
      let v = c.charCodeAt(0) - 0x30;
      for (let n = 1; n < 3 && isOctal(this.peek()); n++) {
        v = v * 8 + ((this.peek() ?? '0').charCodeAt(0) - 0x30);
        this.i++;
      }
      return v;
    }
    const cp = c.codePointAt(0) ?? 0;
    if (cp < 0x80 && !isAlnum(c)) return cp;
    return this.fail('invalid escape sequence', `\\${c}`);
  }

  private checkFoldSet(): never {
    return this.fail('case-insensitivity flag on part of a pattern with a character class is not supported');
  }

  /** `[…]` with Go's rules (leading `]` is literal, `-` anywhere, POSIX names), emitted as a `v`-mode class. */
  private charClass(flags: Flags): string {
    const start = this.i;
    this.i++; // [
    let negated = false;
    if (this.peek() === '^') {
      negated = true;
      this.i++;
    }
    const items: string[] = [];
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === undefined) this.fail('missing closing ]', this.chars.slice(start).join(''));
      if (c === ']' && !first) break;
      first = false;
      if (c === '[' && this.peek(1) === ':') {
        const rest = this.rest();
        const end = rest.indexOf(':]', 2);
        if (end >= 0) {
          const full = rest.slice(0, end + 2);
          let name = rest.slice(2, end);
          const neg = name.startsWith('^');
          if (neg) name = name.slice(1);
          const body = posixClasses[name];
          if (body === undefined) this.fail('invalid character class range', full);
          items.push(neg ? `[^${body}]` : `[${body}]`);
          this.i += Array.from(full).length;
          continue;
        }
      }
      if (c === '\\') {
        const set = this.classEscape();
        if (set !== undefined) {
          items.push(set);
          continue;
        }
      }
      const lo = this.classChar(start);
      if (this.peek() === '-' && this.peek(1) !== ']' && this.peek(1) !== undefined) {
        this.i++;
        const hi = this.classChar(start);
        if (hi < lo)
          this.fail('invalid character class range', `${String.fromCodePoint(lo)}-${String.fromCodePoint(hi)}`);
        items.push(`${lit(lo)}-${lit(hi)}`);
      } else {
        items.push(lit(lo));
      }
    }
    this.i++; // ]
    if (flags.i !== this.globalFold) this.checkFoldSet();
    return `[${negated ? '^' : ''}${items.join('')}]`;
  }

  private classChar(start: number): number {
    const c = this.peek();
    if (c === undefined) return this.fail('missing closing ]', this.chars.slice(start).join(''));
    if (c === '\\') return this.escapeChar();
    this.i++;
    return c.codePointAt(0) ?? 0;
  }
}

/**
 * Compiles a Go regular expression into a JS RegExp with the same matching behaviour (unanchored search,
 * like Go's `MatchString`). Throws `GoRegexpError` for patterns Go would reject or that cannot be expressed.
 */
export function compileGoRegexp(pattern: string): RegExp {
  const lead = /^\(\?([imsU]*)(?:-([imsU]*))?\)/.exec(pattern);
  const globalFold = lead !== null && (lead[1] ?? '').includes('i') && !(lead[2] ?? '').includes('i');
  const source = new Translator(pattern, globalFold).translate();
  try {
    return new RegExp(source, globalFold ? 'iv' : 'v');
  } catch (e) {
    throw new GoRegexpError(e instanceof Error ? e.message : String(e), pattern);
  }
}
