import type { FieldAdaptor } from './field-adaptor.js';

const alwaysPresentBrand: unique symbol = Symbol('alwaysPresent');

/** A string field that counts as present even when empty (see `alwaysPresent`). */
export interface AlwaysPresent {
  readonly [alwaysPresentBrand]: true;
  readonly value: string;
}

/**
 * What a field name can map to in `adaptorFromObject`:
 * - `string`: a scalar, present iff non-empty (containerd's usual `len(x) > 0`); `null`/`undefined`: absent;
 * - `alwaysPresent(s)`: a scalar that is present even when empty (e.g. snapshot `parent`, content `digest`);
 * - a `Record<string, string>` or `Map`: a map such as labels; the rest of the path, joined with `.`, is the
 *   key, and an empty map has no fields at all;
 * - a `FieldAdaptor`: a nested message (e.g. an event payload), asked with the rest of the path.
 */
export type FieldSource =
  | string
  | null
  | undefined
  | AlwaysPresent
  | FieldAdaptor
  | ReadonlyMap<string, string>
  | Readonly<Record<string, string>>;

/** Field names (dotted for nested fields, e.g. `'target.digest'`) mapped to their sources. */
export type AdaptorFields = Readonly<Record<string, FieldSource>>;

/** Marks a string field as present even when it is empty, so `parent==""` can match. */
export function alwaysPresent(value: string): AlwaysPresent {
  return { [alwaysPresentBrand]: true, value };
}

function isAlwaysPresent(v: object): v is AlwaysPresent {
  return alwaysPresentBrand in v;
}

function isFieldAdaptor(v: object): v is FieldAdaptor {
  return typeof (v as { field?: unknown }).field === 'function';
}

function lookup(source: FieldSource, rest: readonly string[]): string | undefined {
  if (source === undefined || source === null) return undefined;
  if (typeof source === 'string') return source === '' ? undefined : source;
  if (isAlwaysPresent(source)) return source.value;
  if (isFieldAdaptor(source)) return source.field(rest);
  const key = rest.join('.');
  if (source instanceof Map) return source.get(key);
  const record = source as Readonly<Record<string, string>>;
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/**
 * Builds the adaptor a List RPC hands to `Filter.match`, from a plain description of the object, e.g. for
 * an image: `{ name, 'target.digest': t.digest, 'target.mediatype': t.mediaType, labels, annotations }`.
 *
 * A path is resolved by the longest field name whose dot-separated parts are a prefix of it. As in
 * containerd's adaptors, a scalar also answers for longer paths (`name.x` reads `name`) and a path that
 * stops inside a nested name (`target` alone) is absent. Never throws.
 */
export function adaptorFromObject(fields: AdaptorFields): FieldAdaptor {
  const entries = Object.entries(fields)
    .map(([name, source]) => ({ parts: name.split('.'), source }))
    .sort((a, b) => b.parts.length - a.parts.length);
  return {
    field(path: readonly string[]): string | undefined {
      for (const { parts, source } of entries) {
        if (parts.length > path.length || !parts.every((p, i) => p === path[i])) continue;
        return lookup(source, path.slice(parts.length));
      }
      return undefined;
    },
  };
}
