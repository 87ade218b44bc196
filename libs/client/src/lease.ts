import { randomBytes } from 'node:crypto';
import { isNotFound } from '@berth/common/errors';
import type { CallContext, NodeClient } from './node-client.js';

/** Default lifetime of a pull's lease: containerd's (24 h); the lease is deleted long before, unless the client dies. */
export const defaultLeaseExpiry = 24 * 60 * 60 * 1000;

/**
 * Creates a lease that keeps everything created under it (ingests, blobs, snapshots) from garbage
 * collection until it is deleted or `containerd.io/gc.expire` passes. Returns its id.
 */
export async function createLease(
  node: NodeClient,
  ctx: CallContext,
  expiresInMs = defaultLeaseExpiry,
  labels: Readonly<Record<string, string>> = {},
): Promise<string> {
  const id = `berth-${Date.now()}-${randomBytes(4).toString('hex')}`;
  const expire = new Date(Date.now() + expiresInMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const lease = await node.leases.create({ ...ctx, lease: undefined }, id, {
    ...labels,
    'containerd.io/gc.expire': expire,
  });
  return lease.id || id;
}

/** Deletes a lease; a lease that is already gone is fine. Uses its own signal: cleanup must run even after a cancel. */
export async function deleteLease(node: NodeClient, namespace: string | undefined, id: string): Promise<void> {
  try {
    await node.leases.delete({ namespace, lease: undefined, signal: AbortSignal.timeout(30_000) }, id);
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
}

/** Ids of the leases matching containerd filters (e.g. `labels."x"==y`). */
export async function listLeases(node: NodeClient, ctx: CallContext, filters: readonly string[]): Promise<string[]> {
  const leases = await node.leases.list({ ...ctx, lease: undefined }, filters);
  return leases.map((l) => l.id);
}
