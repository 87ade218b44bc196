/**
 * containerd event payloads as clients see them: decoded by type URL, printed as `ctr events` prints them,
 * and read by `event.<field>` filters. Used by the events service (filters, SSE) and the `berth` CLI.
 */
import type { FieldAdaptor } from '@berth/common/filters';
import { payloadTypes } from './registry.js';
import { type MessageSpec, messageAdaptor, messageJson } from './schema.js';

export { goJsonString, goJsonTime } from './schema.js';

/** An `Any` as ts-proto and the event bus carry it. */
export interface AnyPayload {
  readonly typeUrl: string;
  readonly value: Uint8Array;
}

/** The fields of an envelope a filter or a printer needs. */
export interface EnvelopeView {
  readonly timestamp: Date;
  readonly namespace: string;
  readonly topic: string;
  readonly event: AnyPayload | undefined;
}

/** Whether `typeUrl` is a payload type containerd's clients can decode. */
export function isKnownPayload(typeUrl: string): boolean {
  return payloadTypes.has(typeUrl);
}

/** The decoded payload with its layout; undefined for an unknown type or undecodable bytes (as `typeurl.UnmarshalAny` fails). */
function decode(any: AnyPayload): { spec: MessageSpec; msg: Readonly<Record<string, unknown>> } | undefined {
  const type = payloadTypes.get(any.typeUrl);
  if (!type) return undefined;
  try {
    return { spec: type.spec, msg: type.decode(any.value) as Readonly<Record<string, unknown>> };
  } catch {
    return undefined;
  }
}

/** The payload as Go's `json.Marshal` of containerd's struct, or undefined when it cannot be decoded. */
export function payloadJson(any: AnyPayload): string | undefined {
  const d = decode(any);
  return d ? messageJson(d.spec, d.msg) : undefined;
}

/**
 * containerd's `Envelope.Field`: `namespace`, `topic` (present iff non-empty) and `event.<field>` read from
 * the decoded payload. The payload is decoded at most once per adaptor, and only if a filter asks.
 */
export function envelopeAdaptor(e: EnvelopeView): FieldAdaptor {
  let payload: FieldAdaptor | null | undefined;
  return {
    field(path) {
      const [first, ...rest] = path;
      switch (first) {
        case 'namespace':
          return e.namespace === '' ? undefined : e.namespace;
        case 'topic':
          return e.topic === '' ? undefined : e.topic;
        case 'event': {
          if (payload === undefined) {
            const d = e.event ? decode(e.event) : undefined;
            payload = d ? messageAdaptor(d.spec, d.msg) : null;
          }
          return payload?.field(rest);
        }
        default:
          return undefined;
      }
    },
  };
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** Go's `time.Time.String()` of a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC` (zero fraction trimmed). */
export function goTimeString(d: Date): string {
  const frac = pad(d.getUTCMilliseconds(), 3).replace(/0+$/, '');
  return (
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}${frac ? `.${frac}` : ''} +0000 UTC`
  );
}

/**
 * The line `ctr events` prints for an envelope: `<timestamp> <namespace> <topic> <json(event)>`; undefined
 * for a payload it cannot decode (ctr skips those with a warning).
 */
export function ctrEventLine(e: EnvelopeView): string | undefined {
  let json = '';
  if (e.event) {
    const out = payloadJson(e.event);
    if (out === undefined) return undefined;
    json = out;
  }
  return `${goTimeString(e.timestamp)} ${e.namespace} ${e.topic} ${json}`;
}
