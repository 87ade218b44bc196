import type postgres from 'postgres';

/**
 * All SQL of the gc service: the leader's advisory lock, on the one database session a replica keeps for it
 * (see leader/election.ts). gc keeps no tables of its own; the records it marks over are its owners'.
 */

/** The session advisory lock only the leader's database session holds. */
export const leaderLockName = 'berth.gc.leader';

/** This session's pid, and whether this session (not merely this process) holds the leader lock. */
export async function leaderLockHeld(sql: postgres.Sql): Promise<{ pid: number; held: boolean } | undefined> {
  const [row] = await sql.unsafe<Array<{ pid: number; held: boolean }>>(
    `SELECT pg_backend_pid() AS pid, EXISTS (
       SELECT 1 FROM pg_locks, (SELECT hashtext($1)::bigint AS k) key
       WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND mode = 'ExclusiveLock'
         AND objsubid = 1 AND classid::bigint = ((key.k >> 32) & 4294967295) AND objid::bigint = (key.k & 4294967295)
     ) AS held`,
    [leaderLockName],
  );
  return row;
}

/** Takes the leader lock on this session if no session holds it; this session's pid either way. */
export async function tryTakeLeaderLock(sql: postgres.Sql): Promise<{ ok: boolean; pid: number } | undefined> {
  const [row] = await sql.unsafe<Array<{ ok: boolean; pid: number }>>(
    'SELECT pg_try_advisory_lock(hashtext($1)) AS ok, pg_backend_pid() AS pid',
    [leaderLockName],
  );
  return row;
}

/** The pid of the session `tx` runs on. */
export async function sessionPid(tx: postgres.TransactionSql): Promise<number | undefined> {
  const [row] = await tx.unsafe<Array<{ pid: number }>>('SELECT pg_backend_pid() AS pid');
  return row?.pid;
}
