import type { FieldAdaptor } from '@berth/common/filters';

/**
 * How one field of a containerd event payload shows in the two places containerd exposes it besides the
 * wire: `encoding/json` of the gogo struct (what `ctr events` prints) and the generated `Field` method
 * (what `event.<field>` filters read).
 *
 * - `string`: JSON `omitempty` unless `always`; filterable, present iff non-empty.
 * - `strings`: a `[]string`, JSON `omitempty`; not filterable.
 * - `uint`: JSON `omitempty`; not filterable (containerd's fieldpath plugin skips numbers).
 * - `bool`: JSON `omitempty`; filterable as "true"/"false", always present (TaskIO.terminal).
 * - `time`: a `time.Time` (gogo stdtime), always in JSON (zero time when unset); not filterable.
 * - `labels`: a map, JSON `omitempty` with sorted keys; filterable with the rest of the path as key.
 * - `message` / `messages`: nested struct pointer / slice; only `message` is filterable (recursively).
 * - `any`: a gogo `types.Any` (`{"type_url","value"(base64)}`); not filterable here.
 */
export type FieldKind = 'string' | 'strings' | 'uint' | 'bool' | 'time' | 'labels' | 'message' | 'messages' | 'any';

export interface FieldSpec {
  /** The proto field name, which is also the JSON name and the filter path component. */
  readonly name: string;
  /** The property of the ts-proto object. */
  readonly key: string;
  readonly kind: FieldKind;
  /** For `string`: emitted even when empty (no `omitempty` in containerd's struct tag). */
  readonly always?: boolean;
  /** For `message` / `messages`. */
  readonly nested?: MessageSpec;
  /** For `string` fields containerd's `Field` method does not expose. */
  readonly unfilterable?: boolean;
}

export type MessageSpec = readonly FieldSpec[];

type Obj = Readonly<Record<string, unknown>>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null;
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** Go's `encoding/json` string escaping: like JSON.stringify, plus the HTML-safe escapes Go applies by default. */
export function goJsonString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Go's `time.Time` JSON form (RFC 3339 with trailing zero nanoseconds trimmed), UTC as gogo decodes it. */
export function goJsonTime(d: Date | undefined): string {
  const t = d ?? goZeroTime;
  const iso = t.toISOString(); // 2024-01-02T03:04:05.678Z, or ±YYYYYY for years beyond 4 digits
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z$/.exec(iso);
  if (!m) return iso;
  const frac = (m[2] ?? '').replace(/0+$/, '');
  return `${m[1]}${frac ? `.${frac}` : ''}Z`;
}

/** Go's zero `time.Time` (0001-01-01T00:00:00Z), what an unset Timestamp becomes in containerd's structs. */
export const goZeroTime: Date = (() => {
  const d = new Date(0);
  d.setUTCFullYear(1, 0, 1); // Date.UTC would read year 1 as 1901
  return d;
})();

function labelsJson(v: unknown): string | undefined {
  if (!isObj(v)) return undefined;
  const keys = Object.keys(v).sort();
  if (keys.length === 0) return undefined;
  return `{${keys.map((k) => `${goJsonString(k)}:${goJsonString(str(v[k]))}`).join(',')}}`;
}

function anyJson(v: unknown): string | undefined {
  if (!isObj(v)) return undefined;
  const parts: string[] = [];
  const typeUrl = str(v['typeUrl']);
  if (typeUrl) parts.push(`"type_url":${goJsonString(typeUrl)}`);
  const value = v['value'];
  if (value instanceof Uint8Array && value.length > 0) {
    parts.push(`"value":"${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}"`);
  }
  return `{${parts.join(',')}}`;
}

/** The JSON text Go's `json.Marshal` produces for the payload struct described by `spec`. */
export function messageJson(spec: MessageSpec, msg: Obj): string {
  const parts: string[] = [];
  for (const f of spec) {
    const v = msg[f.key];
    let out: string | undefined;
    switch (f.kind) {
      case 'string':
        out = str(v) !== '' || f.always ? goJsonString(str(v)) : undefined;
        break;
      case 'strings':
        out =
          Array.isArray(v) && v.length > 0 ? `[${v.map((x: unknown) => goJsonString(str(x))).join(',')}]` : undefined;
        break;
      case 'uint':
        out = typeof v === 'number' && v !== 0 ? String(v) : undefined;
        break;
      case 'bool':
        out = v === true ? 'true' : undefined;
        break;
      case 'time':
        out = `"${goJsonTime(v instanceof Date ? v : undefined)}"`;
        break;
      case 'labels':
        out = labelsJson(v);
        break;
      case 'message':
        out = isObj(v) && f.nested ? messageJson(f.nested, v) : undefined;
        break;
      case 'messages':
        out =
          Array.isArray(v) && v.length > 0 && f.nested
            ? `[${v.map((item: unknown) => (isObj(item) && f.nested ? messageJson(f.nested, item) : 'null')).join(',')}]`
            : undefined;
        break;
      case 'any':
        out = anyJson(v);
        break;
    }
    if (out !== undefined) parts.push(`${goJsonString(f.name)}:${out}`);
  }
  return `{${parts.join(',')}}`;
}

/** The `event.<field>` view of a payload, as containerd's generated `Field(fieldpath)` methods answer. */
export function messageAdaptor(spec: MessageSpec, msg: Obj): FieldAdaptor {
  return {
    field(path) {
      const [first, ...rest] = path;
      const f = spec.find((s) => s.name === first);
      if (!f || f.unfilterable) return undefined;
      const v = msg[f.key];
      switch (f.kind) {
        case 'string':
          return str(v) === '' ? undefined : str(v);
        case 'bool':
          return v === true ? 'true' : 'false';
        case 'labels': {
          if (!isObj(v) || Object.keys(v).length === 0) return undefined;
          const key = rest.join('.');
          return Object.hasOwn(v, key) ? str(v[key]) : undefined;
        }
        case 'message':
          return isObj(v) && f.nested ? messageAdaptor(f.nested, v).field(rest) : undefined;
        default:
          return undefined;
      }
    },
  };
}
