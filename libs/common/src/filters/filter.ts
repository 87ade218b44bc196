import type { FieldAdaptor } from './field-adaptor.js';
import type { GoRegexp } from './go-regexp.js';

/** A parsed filter: tests one object, seen through an adaptor. Matching never throws (unless the adaptor does). */
export interface Filter {
  match(adaptor: FieldAdaptor): boolean;
}

/** The filter that matches every object (what an empty filter string or an empty filter list means). */
export const ALWAYS: Filter = Object.freeze({ match: (): boolean => true });

export const Operator = {
  Present: '?',
  Equal: '==',
  NotEqual: '!=',
  Matches: '~=',
} as const;
export type Operator = (typeof Operator)[keyof typeof Operator];

/** One `<fieldpath>[<op><value>]` term. Internal: build through `parseFilter`. */
export class Selector implements Filter {
  constructor(
    readonly fieldPath: readonly string[],
    readonly operator: Operator,
    readonly value: string,
    private readonly regexp?: GoRegexp,
  ) {}

  match(adaptor: FieldAdaptor): boolean {
    const value = adaptor.field(this.fieldPath);
    switch (this.operator) {
      case Operator.Present:
        return value !== undefined;
      case Operator.Equal:
        return value !== undefined && value === this.value;
      // containerd compares an absent field as "", so `!=` and `~=` can match objects lacking the field.
      case Operator.NotEqual:
        return (value ?? '') !== this.value;
      case Operator.Matches:
        return this.regexp?.test(value ?? '') ?? false;
    }
  }
}

/** Matches when every part matches (the selectors of one filter string). */
export class AllOf implements Filter {
  constructor(readonly parts: readonly Filter[]) {}
  match(adaptor: FieldAdaptor): boolean {
    return this.parts.every((p) => p.match(adaptor));
  }
}

/** Matches when any part matches (the strings of a filter list). */
export class AnyOf implements Filter {
  constructor(readonly parts: readonly Filter[]) {}
  match(adaptor: FieldAdaptor): boolean {
    return this.parts.some((p) => p.match(adaptor));
  }
}
