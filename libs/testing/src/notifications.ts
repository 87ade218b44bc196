import { setTimeout as sleep } from 'node:timers/promises';

/** What of a database these helpers need (structurally, @berth/common's Db). */
export interface Notifying {
  query(text: string, params?: readonly unknown[]): Promise<unknown[]>;
  listen(channel: string, onNotify: (payload: string) => void, onReset: () => void): Promise<() => Promise<void>>;
}

/**
 * Resolves once the notifications of every commit so far have reached the listeners of `db` on each of
 * `channels`: they arrive in commit order on one connection, so a marker sent now is delivered after them.
 * A replica's own writes notify too, and a lookup racing that notification is not cached, which would let a
 * test pass on a cache miss or fail one that expects a cached row.
 */
export async function notificationsSettled(db: Notifying, channels: readonly string[]): Promise<void> {
  const marker = `settled-${Math.random().toString(36).slice(2)}`;
  await Promise.all(
    channels.map(async (channel) => {
      let seen = false;
      const unlisten = await db.listen(
        channel,
        (p) => void (p === marker && (seen = true)),
        () => undefined,
      );
      try {
        await db.query('SELECT pg_notify($1, $2)', [channel, marker]);
        const deadline = Date.now() + 5_000;
        while (!seen) {
          if (Date.now() > deadline) throw new Error(`no marker on ${channel}`);
          await sleep(5);
        }
      } finally {
        await unlisten();
      }
    }),
  );
}
