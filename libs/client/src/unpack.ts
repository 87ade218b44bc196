/**
 * Unpacks one layer into a committed snapshot named by its chain ID, as containerd's rootfs.ApplyLayer
 * does: Stat(chainID) → NotFound → Prepare("extract-<nanos>-<rand> <chainID>", parent) → Diff.Apply →
 * check the diff ID → Commit(chainID). Another client unpacking the same layer at the same time is fine:
 * AlreadyExists from Commit means it won.
 */
import { randomBytes } from 'node:crypto';
import { ErrorCode, isAlreadyExists, isNotFound, ServiceError, wrap } from '@berth/common/errors';
import type { Mount } from '@berth/common/mount';
import type { Descriptor } from '@berth/common/oci';
import type { CallContext, NodeClient } from './node-client.js';

export interface UnpackLayer {
  readonly desc: Descriptor;
  /** sha256 of the uncompressed layer (the config's diff_ids entry). */
  readonly diffId: string;
  readonly chainId: string;
  /** The chain ID of the layer below, '' for the first. */
  readonly parent: string;
}

/** Whether the committed snapshot `key` exists; other errors than not_found propagate. */
export async function snapshotExists(
  node: NodeClient,
  ctx: CallContext,
  snapshotter: string,
  key: string,
): Promise<boolean> {
  try {
    await node.snapshots.stat(ctx, snapshotter, key);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw wrap(e, `failed to stat snapshot ${key}`);
  }
}

/** containerd's unpack key: unique per attempt, ending in the chain ID it will be committed as. */
function extractKey(chainId: string): string {
  const nanos = Number(process.hrtime.bigint() % 1_000_000_000n);
  return `extract-${nanos}-${randomBytes(3).toString('base64url')} ${chainId}`;
}

/** Applies `layer` on top of its parent. Returns `exists` if the snapshot was there (or another client committed it first). */
export async function unpackLayer(
  node: NodeClient,
  ctx: CallContext,
  snapshotter: string,
  layer: UnpackLayer,
): Promise<'applied' | 'exists'> {
  if (await snapshotExists(node, ctx, snapshotter, layer.chainId)) return 'exists';
  let key = '';
  let mounts: Mount[] = [];
  for (let attempt = 0; ; attempt++) {
    key = extractKey(layer.chainId);
    try {
      mounts = await node.snapshots.prepare(ctx, snapshotter, key, layer.parent);
      break;
    } catch (e) {
      // Only the random part can collide; try another.
      if (isAlreadyExists(e) && attempt < 3) continue;
      throw wrap(e, `failed to prepare extraction snapshot ${JSON.stringify(key)}`);
    }
  }
  try {
    const applied = (await node.diff.apply(ctx, layer.desc, mounts))?.digest ?? '';
    if (applied !== layer.diffId) {
      throw new ServiceError(
        ErrorCode.Unknown,
        `wrong diff id calculated on extraction ${JSON.stringify(applied)}, want ${layer.diffId}`,
      );
    }
  } catch (e) {
    await removeQuietly(node, ctx, snapshotter, key);
    throw wrap(e, `failed to extract layer ${layer.diffId}`);
  }
  try {
    await node.snapshots.commit(ctx, snapshotter, layer.chainId, key);
    return 'applied';
  } catch (e) {
    await removeQuietly(node, ctx, snapshotter, key);
    if (isAlreadyExists(e)) return 'exists';
    throw wrap(e, `failed to commit snapshot ${key}`);
  }
}

async function removeQuietly(node: NodeClient, ctx: CallContext, snapshotter: string, key: string): Promise<void> {
  try {
    await node.snapshots.remove({ ...ctx, signal: AbortSignal.timeout(30_000) }, snapshotter, key);
  } catch {
    // Best effort, as containerd: the active snapshot is unreferenced and gc collects it with the lease.
  }
}
