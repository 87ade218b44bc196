import type { Queryable } from '@berth/common/db';
import { failedPrecondition } from '@berth/common/errors';
import type { Logger } from '@berth/common/log';
import postgres from 'postgres';
import { leaderLockHeld, sessionPid, tryTakeLeaderLock } from '../db/leader-repo.js';

export interface Election {
  /** Whether this process holds the leader lock (as of its last check). */
  isLeader(): boolean;
  /** The leader's database session (pg_backend_pid), undefined when not the leader. */
  session(): number | undefined;
  /**
   * Runs `fn` in a transaction on the leader's own session, given that session's pid (the fence owners check).
   * failed_precondition when this process is not the leader. A session that ends mid-way (the leader deposed)
   * takes its transaction, and its collection lock, with it.
   */
  transaction<T>(fn: (q: Queryable, pid: number) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * Leader election on Postgres: every replica keeps one session of its own (a postgres.js client of one
 * connection: `sql.reserve()` hung on a terminated session) and tries `pg_try_advisory_lock` on it every
 * `pollMs`; the holder checks each time that its session is still the one that took the lock. The server releases the lock when the session ends, so a replica takes over
 * within a poll of the leader's death.
 */
export function startElection(opts: {
  readonly url: string;
  readonly log: Logger;
  readonly pollMs?: number;
  readonly onChange?: (leader: boolean) => void;
}): Election {
  const pollMs = opts.pollMs ?? 2_000;
  // One connection is one session: a pool of one is this replica's reserved session. When the session dies
  // the client opens a new one on the next query, which never inherits the lock (checked by pid below).
  const connect = (): postgres.Sql =>
    postgres(opts.url, {
      max: 1,
      onnotice: () => undefined,
      connect_timeout: 5,
      types: { bigint: { to: 20, from: [20], serialize: (v: number) => String(v), parse: (v: string) => Number(v) } },
    });
  let sql = connect();
  let leaderPid: number | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let busy: Promise<unknown> = Promise.resolve();

  const setLeader = (pid: number | undefined): void => {
    const was = leaderPid !== undefined;
    leaderPid = pid;
    if (was !== (pid !== undefined)) {
      opts.log.info(pid !== undefined ? 'gc: became the leader' : 'gc: no longer the leader', { pid });
      opts.onChange?.(pid !== undefined);
    }
  };

  const within = <T>(p: Promise<T>, ms: number): Promise<T> => {
    let t: NodeJS.Timeout | undefined;
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(t));
  };

  const check = async (): Promise<void> => {
    try {
      const row = await within(leaderLockHeld(sql), pollMs + 5_000);
      if (!row) return;
      if (row.held) {
        setLeader(row.pid);
        return;
      }
      // Not (or no longer) holding it: a replaced session never inherits the lock, so leadership is lost.
      setLeader(undefined);
      const got = await within(tryTakeLeaderLock(sql), pollMs + 5_000);
      if (got?.ok) setLeader(got.pid);
    } catch (e) {
      opts.log.warn('gc: leader election check failed; reconnecting', { err: e });
      setLeader(undefined);
      const old = sql;
      sql = connect();
      void old.end({ timeout: 0 }).catch(() => undefined);
    }
  };

  const loop = (): void => {
    if (closed) return;
    busy = busy.then(check);
    void busy.then(() => {
      if (!closed) {
        timer = setTimeout(loop, pollMs);
        timer.unref();
      }
    });
  };
  loop();

  return {
    isLeader: () => leaderPid !== undefined,
    session: () => leaderPid,
    async transaction(fn) {
      const pid = leaderPid;
      if (pid === undefined) throw failedPrecondition('this gc replica is not the leader');
      return (await sql.begin(async (tx) => {
        if ((await sessionPid(tx)) !== pid) {
          setLeader(undefined);
          throw failedPrecondition('the gc leader lost its database session');
        }
        const q: Queryable = {
          query: async (text, params = []) =>
            (await tx.unsafe(text, params as postgres.ParameterOrJSON<never>[])) as never,
          exec: async (text) => {
            await tx.unsafe(text);
          },
        };
        return fn(q, pid);
      })) as Awaited<ReturnType<typeof fn>>;
    },
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      await within(busy, 10_000).catch(() => undefined);
      setLeader(undefined);
      await sql.end({ timeout: 2 });
    },
  };
}
