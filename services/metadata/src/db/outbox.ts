import type { Queryable } from '@berth/common/db';

/** An event waiting in the outbox: its payload is already the encoded containerd event message. */
export interface OutboxEvent {
  readonly namespace: string;
  readonly topic: string;
  readonly typeUrl: string;
  readonly payload: Uint8Array;
}

export interface OutboxRow extends OutboxEvent {
  readonly id: number;
  readonly createdAt: Date;
}

/** Adds an event inside the caller's transaction, so it exists exactly when the change commits. */
export async function enqueue(tx: Queryable, e: OutboxEvent): Promise<void> {
  await tx.query('INSERT INTO metadata.outbox (namespace, topic, type_url, payload) VALUES ($1, $2, $3, $4)', [
    e.namespace,
    e.topic,
    e.typeUrl,
    Buffer.from(e.payload),
  ]);
}

/** The oldest events, in commit order. */
export async function oldest(tx: Queryable, limit: number): Promise<OutboxRow[]> {
  const rows = await tx.query<{
    id: number | string;
    namespace: string;
    topic: string;
    type_url: string;
    payload: Uint8Array;
    created_at: Date;
  }>('SELECT id, namespace, topic, type_url, payload, created_at FROM metadata.outbox ORDER BY id LIMIT $1', [limit]);
  return rows.map((r) => ({
    id: Number(r.id),
    namespace: r.namespace,
    topic: r.topic,
    typeUrl: r.type_url,
    payload: r.payload,
    createdAt: r.created_at,
  }));
}

export async function removeUpTo(tx: Queryable, id: number): Promise<void> {
  await tx.query('DELETE FROM metadata.outbox WHERE id <= $1', [id]);
}
