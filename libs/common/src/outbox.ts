import { type Db, deferOrQuery, type Queryable } from './db.js';
import type { EventPublisher } from './event-bus.js';
import type { Logger } from './log.js';

/**
 * The transactional outbox: a service writes the events of a change into `<schema>.outbox` in the same
 * transaction as the change, and a relay publishes them afterwards. A bus outage delays events; it never
 * loses them or fails the change.
 */

/** An event waiting in the outbox: its payload is already the encoded containerd event message. */
export interface OutboxEvent {
  readonly namespace: string;
  readonly topic: string;
  readonly typeUrl: string;
  readonly payload: Uint8Array;
}

interface OutboxRow extends OutboxEvent {
  readonly id: number;
  readonly createdAt: Date;
}

/**
 * The migration SQL that creates `<schema>.outbox`; include it in the service's own migrations.
 * `outbox_source` holds one random id per database: row ids restart in every new database, so event ids
 * sent to the bus for deduplication are `<schema>-<source>-<row id>`, unique across databases sharing a bus.
 */
export function outboxTableSql(schema: string): string {
  return `CREATE TABLE ${schema}.outbox (
    id          bigserial PRIMARY KEY,
    namespace   text NOT NULL,
    topic       text NOT NULL,
    type_url    text NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE ${schema}.outbox_source (id text PRIMARY KEY);
  INSERT INTO ${schema}.outbox_source (id) VALUES (gen_random_uuid()::text);`;
}

/**
 * Adds an event inside the caller's transaction, so it exists exactly when the change commits. Writers of one
 * namespace are serialized from here to their commit, so within a namespace the outbox id order is the commit
 * order and an event never becomes visible after a later one of the same namespace.
 */
export async function enqueue(tx: Queryable, schema: string, e: OutboxEvent): Promise<void> {
  await deferOrQuery(
    tx,
    `WITH serialized AS (SELECT pg_advisory_xact_lock(hashtext($5)))
     INSERT INTO ${schema}.outbox (namespace, topic, type_url, payload) SELECT $1, $2, $3, $4 FROM serialized`,
    [e.namespace, e.topic, e.typeUrl, Buffer.from(e.payload), `berth.${schema}.outbox.${e.namespace}`],
  );
}

/** `enqueue` for many events in one statement (a garbage collection's removals), in the order given. */
export async function enqueueMany(tx: Queryable, schema: string, events: readonly OutboxEvent[]): Promise<void> {
  if (events.length === 0) return;
  for (const ns of [...new Set(events.map((e) => e.namespace))].sort())
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`berth.${schema}.outbox.${ns}`]);
  await deferOrQuery(
    tx,
    `INSERT INTO ${schema}.outbox (namespace, topic, type_url, payload)
     SELECT n, t, u, decode(p, 'hex') FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS e(n, t, u, p, i)
     ORDER BY i`,
    [
      events.map((e) => e.namespace),
      events.map((e) => e.topic),
      events.map((e) => e.typeUrl),
      events.map((e) => Buffer.from(e.payload).toString('hex')),
    ],
  );
}

async function oldest(tx: Queryable, schema: string, limit: number): Promise<OutboxRow[]> {
  const rows = await tx.query<{
    id: number | string;
    namespace: string;
    topic: string;
    type_url: string;
    payload: Uint8Array;
    created_at: Date;
  }>(`SELECT id, namespace, topic, type_url, payload, created_at FROM ${schema}.outbox ORDER BY id LIMIT $1`, [limit]);
  return rows.map((r) => ({
    id: Number(r.id),
    namespace: r.namespace,
    topic: r.topic,
    typeUrl: r.type_url,
    payload: r.payload,
    createdAt: r.created_at,
  }));
}

export interface OutboxRelay {
  /** Asks the relay to look at the outbox now (after a commit that enqueued events). */
  kick(): void;
  /** Publishes everything committed so far; resolves when the outbox is empty (used in tests and at shutdown). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface OutboxRelayOptions {
  readonly db: Db;
  /** The service's schema, which holds its `outbox` table. */
  readonly schema: string;
  readonly bus: EventPublisher;
  readonly log: Logger;
  /** How often to look even without a kick (other replicas' commits). Default 1 s. */
  readonly pollMs?: number;
  /**
   * How long a kick waits for more commits before the relay looks (default 20 ms): a burst of changes then
   * shares one read and one delete of the outbox. On PGlite every statement, the relay's too, waits in the
   * one query queue of the process, where ~1.5 ms of relay work per change lands on the next requests.
   */
  readonly coalesceMs?: number;
  readonly batch?: number;
}

/**
 * Moves events from the outbox to the bus, oldest first. One relay works at a time across replicas
 * (transaction-scoped advisory lock), so the order of commits is the order of publication. An event is
 * deleted only after the bus accepted it; a crash in between re-publishes it with the same id, which the bus
 * deduplicates. While the bus is down, events wait and the relay retries with backoff: changes never fail.
 */
export function startOutboxRelay(opts: OutboxRelayOptions): OutboxRelay {
  const pollMs = opts.pollMs ?? 1_000;
  const coalesceMs = opts.coalesceMs ?? 20;
  let kicked: NodeJS.Timeout | undefined;
  const batch = opts.batch ?? 256;
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  const idle: Array<() => void> = [];

  /**
   * Runs `fn` as the only relay of this schema. On a server, replicas exclude each other with a
   * transaction-scoped advisory lock; PGlite is one process with one relay per schema, and holding a
   * transaction there would stall every other query of the process while the bus is slow.
   */
  const exclusively = async <T>(fn: (q: Queryable) => Promise<T>, otherwise: T): Promise<T> => {
    if (opts.db.kind === 'pglite') return fn(opts.db);
    return opts.db.transaction(async (tx) => {
      const [lock] = await tx.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok', [
        `berth.${opts.schema}.outbox`,
      ]);
      return lock?.ok ? fn(tx) : otherwise;
    });
  };

  let source: string | undefined;

  /** One batch: true when it was full (there may be more). Throws after committing the progress made. */
  const drainOnce = async (): Promise<boolean> => {
    let failure: unknown;
    const full = await exclusively(async (q) => {
      source ??= (await q.query<{ id: string }>(`SELECT id FROM ${opts.schema}.outbox_source LIMIT 1`))[0]?.id;
      if (source === undefined) throw new Error(`${opts.schema}.outbox_source is empty`);
      const rows = await oldest(q, opts.schema, batch);
      const published: number[] = [];
      try {
        for (const r of rows) {
          await opts.bus.publish(
            {
              timestamp: r.createdAt,
              namespace: r.namespace,
              topic: r.topic,
              event: { typeUrl: r.typeUrl, value: r.payload },
            },
            { id: `${opts.schema}-${source}-${r.id}` },
          );
          published.push(r.id);
        }
      } catch (e) {
        // Commit what was published, so a long outage cannot outlast the bus's dedupe window and re-send it.
        failure = e;
      }
      // By id, not `id <= last`: a lower id committed meanwhile by another writer has not been published yet.
      if (published.length > 0) {
        await q.query(`DELETE FROM ${opts.schema}.outbox WHERE id = ANY($1::bigint[])`, [`{${published.join(',')}}`]);
      }
      return rows.length === batch && failure === undefined;
    }, false);
    if (failure !== undefined) throw failure;
    return full;
  };

  const run = async (): Promise<void> => {
    do {
      again = false;
      try {
        while (!closed && (await drainOnce())) {
          /* a full batch: there may be more */
        }
        failures = 0;
      } catch (e) {
        failures++;
        if (failures === 1 || failures % 20 === 0)
          opts.log.warn('outbox relay: publish failed, will retry', { err: e, failures });
        schedule(Math.min(5_000, 50 * 2 ** Math.min(failures, 7)));
        return;
      }
    } while (again && !closed);
    if (idle.length === 0) return;
    const empty = (await opts.db.query<{ n: number | string }>(`SELECT count(*) AS n FROM ${opts.schema}.outbox`))[0];
    if (Number(empty?.n ?? 0) === 0) for (const done of idle.splice(0)) done();
  };

  /** A kick after a commit; while the bus is failing, the backoff timer decides when to try again. */
  const kick = (): void => {
    if (failures !== 0 || kicked) return;
    if (coalesceMs <= 0) {
      trigger();
      return;
    }
    kicked = setTimeout(() => {
      kicked = undefined;
      trigger();
    }, coalesceMs);
  };

  const trigger = (): void => {
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    running = run().finally(() => {
      running = undefined;
      if (again) trigger();
    });
  };

  const schedule = (ms: number): void => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      trigger();
      schedule(pollMs);
    }, ms);
    timer.unref();
  };

  schedule(0);
  // Back from an outage: publish what waited now rather than when the backoff runs out.
  const unwatch = opts.bus.onAvailable?.(() => failures > 0 && schedule(0));
  return {
    kick,
    flush: () =>
      new Promise<void>((resolve) => {
        idle.push(resolve);
        trigger();
      }),
    async close() {
      closed = true;
      unwatch?.();
      clearTimeout(timer);
      clearTimeout(kicked);
      await running;
      for (const done of idle.splice(0)) done();
    },
  };
}
