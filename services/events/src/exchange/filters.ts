import { invalidArgument } from '@berth/common/errors';
import type { EventEnvelope } from '@berth/common/event-bus';
import {
  ALWAYS,
  AllOf,
  AnyOf,
  type Filter,
  FilterSyntaxError,
  Operator,
  parseFilters,
  Selector,
} from '@berth/common/filters';
import { envelopeAdaptor } from '../payloads/index.js';

/** A subscription's filters, compiled once. */
export interface EventFilter {
  readonly match: (e: EventEnvelope) => boolean;
  /** The one namespace every match must be in, if the filters pin it: lets the bus narrow on its side. */
  readonly namespace: string | undefined;
  /** Whether every event matches (no filters, or an empty one), so matching can be skipped. */
  readonly all: boolean;
}

/**
 * Compiles containerd subscription filters (`topic=="/tasks/exit"`, `topic~="/images/"`,
 * `namespace==x`, `event.<field>…`; strings OR-ed, selectors within one AND-ed). A malformed filter is
 * invalid_argument with containerd's wording.
 */
export function compileEventFilter(filters: readonly string[]): EventFilter {
  let filter: Filter;
  try {
    filter = parseFilters(filters);
  } catch (e) {
    if (e instanceof FilterSyntaxError) throw invalidArgument(`failed parsing subscription filters: ${e.message}`, e);
    throw e;
  }
  const all = filter === ALWAYS;
  return {
    match: all ? () => true : (e) => filter.match(envelopeAdaptor(e)),
    namespace: all ? undefined : pinnedNamespace(filter),
    all,
  };
}

/** The namespace `namespace==x` pins in every alternative of `f`, if there is one. */
function pinnedNamespace(f: Filter): string | undefined {
  if (f instanceof Selector) {
    const [first, ...rest] = f.fieldPath;
    return first === 'namespace' && rest.length === 0 && f.operator === Operator.Equal ? f.value : undefined;
  }
  if (f instanceof AllOf) {
    for (const p of f.parts) {
      const ns = pinnedNamespace(p);
      if (ns !== undefined) return ns;
    }
    return undefined;
  }
  if (f instanceof AnyOf) {
    const each = f.parts.map(pinnedNamespace);
    const [first] = each;
    return first !== undefined && each.every((ns) => ns === first) ? first : undefined;
  }
  return undefined;
}
