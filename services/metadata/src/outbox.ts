import type { Queryable } from '@berth/common/db';
import { enqueue } from '@berth/common/outbox';

/** An event encoded as containerd sends it (topic, type URL, protobuf payload), ready for the outbox. */
export interface EncodedEvent {
  readonly topic: string;
  readonly typeUrl: string;
  readonly payload: Uint8Array;
}

/** Writes `e` to this service's outbox inside `tx`, so it is published exactly when the change commits. */
export async function enqueueEvent(tx: Queryable, namespace: string, e: EncodedEvent): Promise<void> {
  await enqueue(tx, 'metadata', { namespace, topic: e.topic, typeUrl: e.typeUrl, payload: e.payload });
}
