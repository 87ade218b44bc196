/**
 * Compiles a Go (RE2) regular expression, as containerd's `~=` operator does with `regexp.Compile`. Internal to
 * the filters module.
 *
 * The engine is re2js, a JavaScript port of RE2/Go's `regexp` package: it parses Go's syntax with Go's rules and
 * error texts, and matches in time linear in the input (no backtracking), so a hostile pattern such as `(a+)+$`
 * cannot stall a List or an events subscription. A filter regexp costs O(program size × value) per object, which
 * is why the parser bounds the total program size of a request's regexps (see `maxRegexpProgram`).
 */

import { RE2JS, RE2JSException } from 're2js';

export class GoRegexpError extends Error {
  constructor(message: string) {
    super(message);
  }
}

/** A compiled Go regexp: `test` searches unanchored, like Go's `MatchString`. */
export interface GoRegexp {
  test(input: string): boolean;
  /** The leftmost match and its groups (`null` for a group that did not take part), or `null`. */
  exec(input: string): (string | null)[] | null;
  /** Instructions of the compiled program: matching costs up to this many steps per input character. */
  readonly size: number;
}

/**
 * Go before 1.22 knew no `(?<name>…)`, so it reported lookbehinds as unsupported Perl syntax; re2js (like Go 1.22+)
 * calls them a malformed name. Keep the clearer pre-1.22 text for the two lookbehind forms.
 */
function goMessage(pattern: string, message: string): string {
  const lookbehind = /invalid named capture: `(\(\?<[=!])/.exec(message);
  if (lookbehind && pattern.includes(lookbehind[1] ?? '')) {
    return `error parsing regexp: invalid or unsupported Perl syntax: \`${lookbehind[1]}\``;
  }
  return message;
}

/** Throws `GoRegexpError` for patterns Go would reject, with Go's message (`error parsing regexp: …`). */
export function compileGoRegexp(pattern: string): GoRegexp {
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (e) {
    if (e instanceof RE2JSException) throw new GoRegexpError(goMessage(pattern, e.message));
    // A pattern deep enough to exhaust the JS stack is one Go refuses as nesting too deeply.
    if (e instanceof RangeError) throw new GoRegexpError(`error parsing regexp: expression nests too deeply`);
    throw e;
  }
  return {
    size: re.programSize(),
    test: (input) => re.test(input),
    exec: (input) => {
      const m = re.matcher(input);
      if (!m.find()) return null;
      return Array.from({ length: m.groupCount() + 1 }, (_, i) => m.group(i));
    },
  };
}
