import type { Queryable } from './db.js';

/**
 * The cluster's equivalent of containerd's metadata write lock (`DB.wlock`): every transaction that creates a
 * resource or a reference to one takes it shared; a collection takes it exclusive for its mark and its
 * record sweep, so nothing becomes referenced between the two. Postgres transaction-scoped advisory locks:
 * released by commit or rollback, and by the server when a session dies. PGlite runs one transaction at a
 * time, which is already exclusive; the calls are then no-ops.
 */
export const collectionLockName = 'berth.gc.write';

/**
 * containerd's content lock (`metadata/content.go`): a commit holds it shared from placing the bytes in the
 * backend until its record commits; the backend sweep holds it exclusive while it deletes blobs no record names.
 */
export const contentLockName = 'berth.gc.content';

/** Inside a writer's transaction: waits while a collection marks and sweeps. */
export async function holdCollectionLockShared(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock_shared(hashtext($1))', [collectionLockName]);
}

/** Inside the collection's transaction: waits for writers in flight, then keeps new ones out until it ends. */
export async function holdCollectionLockExclusive(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [collectionLockName]);
}

export async function holdContentLockShared(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock_shared(hashtext($1))', [contentLockName]);
}

export async function holdContentLockExclusive(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [contentLockName]);
}
