/**
 * The single error type of the filters module: every malformed filter (bad syntax, bad quoting, a regular
 * expression that cannot be compiled) is reported as a `FilterSyntaxError`, never as another exception.
 *
 * `code` is the errdefs code a service should answer with; wrap it for the wire with
 * `invalidArgument(err.message, err)` from `../errors.js`, which yields the same text containerd's
 * `filters.ParseAll` produces (`filters: parse error: [...]: <reason>: invalid argument`).
 */
export class FilterSyntaxError extends Error {
  override readonly name = 'FilterSyntaxError';
  readonly code = 'invalid_argument';

  /**
   * @param input the filter string that failed to parse
   * @param position UTF-16 index in `input` where the problem was detected (`input.length` at end of input)
   * @param reason the bare reason, e.g. `expected field or quoted`
   */
  constructor(
    readonly input: string,
    readonly position: number,
    readonly reason: string,
  ) {
    super(`filters: parse error: ${locate(input, position)}: ${reason}`);
  }
}

/** containerd marks the offending character as `[before >|c|< after]`, or `[input]` when at the end. */
function locate(input: string, position: number): string {
  if (position < 0 || position >= input.length) return `[${input}]`;
  const cp = input.codePointAt(position) ?? 0;
  const end = position + (cp > 0xffff ? 2 : 1);
  return `[${input.slice(0, position)} >|${input.slice(position, end)}|< ${input.slice(end)}]`;
}
