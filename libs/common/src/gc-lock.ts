import type { Queryable } from './db.js';
import { ErrorCode, ServiceError } from './errors.js';

/**
 * The cluster's equivalent of containerd's metadata write lock (`DB.wlock`): every transaction that creates a
 * resource or a reference to one takes it shared; a collection takes it exclusive for its mark and its
 * record sweep, so nothing becomes referenced between the two. Postgres transaction-scoped advisory locks:
 * released by commit or rollback, and by the server when a session dies. PGlite runs one transaction at a
 * time, which is already exclusive, in its one session, where an advisory lock never waits: on a
 * `serialized` Queryable the hold… calls send nothing (each was a statement in every writing transaction).
 */
export const collectionLockName = 'berth.gc.write';

/**
 * containerd's content lock (`metadata/content.go`): a commit holds it shared from placing the bytes in the
 * backend until its record commits; the backend sweep holds it exclusive while it deletes blobs no record names.
 */
export const contentLockName = 'berth.gc.content';

/**
 * Taken exclusive by an owner's record removal for a collector in another process, and shared by writers
 * after the collection lock: should the collector's session die mid-sweep (releasing the collection lock),
 * writers still wait for the removal in flight to commit or roll back before they reference anything.
 */
export const sweepLockName = 'berth.gc.sweep';

/** Inside a writer's transaction: waits while a collection marks and sweeps. */
export async function holdCollectionLockShared(tx: Queryable): Promise<void> {
  if (tx.serialized) return;
  await tx.query('SELECT pg_advisory_xact_lock_shared(hashtext($1)), pg_advisory_xact_lock_shared(hashtext($2))', [
    collectionLockName,
    sweepLockName,
  ]);
}

/**
 * Inside an owner's removal transaction for a remote collector: takes the sweep lock, then checks that the
 * collector's session `pid` still holds the collection lock exclusively. Throws failed_precondition when it
 * does not (its session ended: it was deposed), so nothing is removed.
 */
export async function fenceCollector(tx: Queryable, pid: number): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [sweepLockName]);
  const [row] = await tx.query<{ held: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM pg_locks, (SELECT hashtext($2)::bigint AS k) key
       WHERE locktype = 'advisory' AND pid = $1 AND granted AND mode = 'ExclusiveLock' AND objsubid = 1
         AND classid::bigint = ((key.k >> 32) & 4294967295) AND objid::bigint = (key.k & 4294967295)
     ) AS held`,
    [pid, collectionLockName],
  );
  if (!row?.held) {
    throw new ServiceError(
      ErrorCode.FailedPrecondition,
      `collector session ${pid} no longer holds the collection lock: its sweep is refused`,
    );
  }
}

/** Inside the collection's transaction: waits for writers in flight, then keeps new ones out until it ends. */
export async function holdCollectionLockExclusive(tx: Queryable): Promise<void> {
  if (tx.serialized) return;
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [collectionLockName]);
}

export async function holdContentLockShared(tx: Queryable): Promise<void> {
  if (tx.serialized) return;
  await tx.query('SELECT pg_advisory_xact_lock_shared(hashtext($1))', [contentLockName]);
}

export async function holdContentLockExclusive(tx: Queryable): Promise<void> {
  if (tx.serialized) return;
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [contentLockName]);
}

/**
 * Under the collection lock held exclusively: the point after every writer that finished, as a full
 * transaction id (text). A collection marks records read after this point without holding writers out; a
 * record written by a transaction that started after it (`writtenSince`) is read again under the lock.
 */
export async function changePoint(tx: Queryable): Promise<string> {
  const [row] = await tx.query<{ x: string }>('SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x');
  if (!row) throw new Error('pg_current_snapshot() returned no row');
  return String(row.x);
}

/**
 * A condition on `alias`'s row: written (inserted or updated: its `xmin`) by a transaction whose id is at or
 * after the change point passed as parameter `$param` (see `changeParam`). Transaction ids in rows are 32-bit
 * and wrap around: "at or after" is the forward distance modulo 2^32 being under 2^31, as Postgres compares
 * them. An old row's frozen id may read as changed; that only reads it again.
 */
export function writtenSince(alias: string, param: number): string {
  return `((${alias}.xmin::text::bigint - $${param}::bigint + 4294967296) % 4294967296) < 2147483648`;
}

/** The parameter `writtenSince` compares with: the change point's low 32 bits. */
export function changeParam(point: string): string {
  return (BigInt(point) % 4294967296n).toString();
}

/** A WHERE clause (with its parameters) keeping `alias`'s rows written since `point`; none when undefined. */
export function changedRows(alias: string, point: string | undefined): { where: string; params: string[] } {
  return point === undefined
    ? { where: '', params: [] }
    : { where: ` WHERE ${writtenSince(alias, 1)}`, params: [changeParam(point)] };
}
