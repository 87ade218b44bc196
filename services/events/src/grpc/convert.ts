import type { StoredEvent } from '@berth/common/event-bus';
import type { Envelope } from '@berth/proto/containerd/services/events/v1/events';
import type { Any } from '@berth/proto/google/protobuf/any';

/** A bus payload as a proto `Any` (a Buffer view of the same bytes, no copy). */
export function anyToProto(e: { readonly typeUrl: string; readonly value: Uint8Array }): Any {
  return { typeUrl: e.typeUrl, value: Buffer.from(e.value.buffer, e.value.byteOffset, e.value.byteLength) };
}

/** A stored event as containerd's `Envelope`; an event stored without a payload has no `event`. */
export function envelopeToProto(e: StoredEvent): Envelope {
  return {
    timestamp: e.timestamp,
    namespace: e.namespace,
    topic: e.topic,
    event: e.event.typeUrl === '' && e.event.value.length === 0 ? undefined : anyToProto(e.event),
  };
}
