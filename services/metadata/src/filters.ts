import { invalidArgument } from '@berth/common/errors';
import { AllOf, AnyOf, type Filter, FilterSyntaxError, Operator, parseFilters, Selector } from '@berth/common/filters';

/** Parses a List request's filters; a malformed one is invalid_argument with containerd's message. */
export function compileFilters(filters: readonly string[]): Filter {
  try {
    return parseFilters(filters);
  } catch (e) {
    if (e instanceof FilterSyntaxError) throw invalidArgument(e.message, e);
    throw e;
  }
}

/** How a field path of a filter maps to a column: a text column, or a jsonb map read with `->>`. */
export type FilterColumn =
  | { readonly kind: 'text'; readonly sql: string }
  | { readonly kind: 'map'; readonly sql: string };

/**
 * A SQL condition that every object matching `filter` satisfies, or undefined when nothing can be said.
 * Only `==` and presence narrow; the full filter still runs on every row that comes back, so this may
 * over-approximate but never drops a match. Values go into `params` (placeholders continue after them).
 */
export function narrowingSql(
  filter: Filter,
  columnFor: (path: readonly string[]) => FilterColumn | undefined,
  params: unknown[],
): string | undefined {
  if (filter instanceof Selector) {
    if (filter.operator !== Operator.Equal && filter.operator !== Operator.Present) return undefined;
    const [first, ...rest] = filter.fieldPath;
    if (first === undefined) return undefined;
    const exact = columnFor(filter.fieldPath);
    if (exact?.kind === 'text') {
      if (filter.operator === Operator.Present) return undefined;
      params.push(filter.value);
      return `${exact.sql} = $${params.length}`;
    }
    const map = columnFor([first]);
    if (map?.kind !== 'map' || rest.length === 0) return undefined;
    params.push(rest.join('.'));
    const key = `$${params.length}`;
    if (filter.operator === Operator.Present) return `(${map.sql} ->> ${key}::text) IS NOT NULL`;
    params.push(filter.value);
    return `(${map.sql} ->> ${key}::text) = $${params.length}`;
  }
  if (filter instanceof AllOf) {
    const parts = filter.parts.map((p) => narrowingSql(p, columnFor, params)).filter((p) => p !== undefined);
    return parts.length === 0 ? undefined : `(${parts.join(' AND ')})`;
  }
  if (filter instanceof AnyOf) {
    const parts: string[] = [];
    for (const p of filter.parts) {
      const sql = narrowingSql(p, columnFor, params);
      if (sql === undefined) return undefined;
      parts.push(sql);
    }
    return `(${parts.join(' OR ')})`;
  }
  return undefined;
}
