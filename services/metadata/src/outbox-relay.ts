import type { Db } from '@berth/common/db';
import type { EventPublisher } from '@berth/common/event-bus';
import type { Logger } from '@berth/common/log';
import { oldest, removeUpTo } from './db/outbox.js';

export interface OutboxRelay {
  /** Asks the relay to look at the outbox now (after a commit that enqueued events). */
  kick(): void;
  /** Publishes everything committed so far; resolves when the outbox is empty (used in tests and at shutdown). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface OutboxRelayOptions {
  readonly db: Db;
  readonly bus: EventPublisher;
  readonly log: Logger;
  /** Used to make event ids unique across services sharing one bus. */
  readonly source: string;
  /** How often to look even without a kick (other replicas' commits). Default 1 s. */
  readonly pollMs?: number;
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
  const batch = opts.batch ?? 256;
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  const idle: Array<() => void> = [];

  /** One batch: true when it was full (there may be more). Throws after committing the progress made. */
  const drainOnce = async (): Promise<boolean> => {
    let failure: unknown;
    const full = await opts.db.transaction(async (tx) => {
      const [lock] = await tx.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok', [
        'berth.metadata.outbox',
      ]);
      if (!lock?.ok) return false;
      const rows = await oldest(tx, batch);
      let last: number | undefined;
      try {
        for (const r of rows) {
          await opts.bus.publish(
            {
              timestamp: r.createdAt,
              namespace: r.namespace,
              topic: r.topic,
              event: { typeUrl: r.typeUrl, value: r.payload },
            },
            { id: `${opts.source}-${r.id}` },
          );
          last = r.id;
        }
      } catch (e) {
        // Commit what was published, so a long outage cannot outlast the bus's dedupe window and re-send it.
        failure = e;
      }
      if (last !== undefined) await removeUpTo(tx, last);
      return rows.length === batch;
    });
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
        if (failures === 1 || failures % 20 === 0) opts.log.warn('outbox relay: publish failed, will retry', { err: e, failures });
        schedule(Math.min(5_000, 50 * 2 ** Math.min(failures, 7)));
        return;
      }
    } while (again && !closed);
    const empty = (await opts.db.query<{ n: number | string }>('SELECT count(*) AS n FROM metadata.outbox'))[0];
    if (Number(empty?.n ?? 0) === 0) for (const done of idle.splice(0)) done();
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
  return {
    kick: trigger,
    flush: () =>
      new Promise<void>((resolve) => {
        idle.push(resolve);
        trigger();
      }),
    async close() {
      closed = true;
      clearTimeout(timer);
      await running;
      for (const done of idle.splice(0)) done();
    },
  };
}
