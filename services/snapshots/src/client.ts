/**
 * @berth/snapshots/client: how clients reach a node's snapshotters (containerd's Snapshots API), as the
 * unpack of a pulled image and `berth snapshots ls` do. A gRPC proxy only: nothing in berthd calls the
 * snapshotters in process (gc reaches their records through `@berth/gc`'s owners).
 */
import type { CallContext } from '@berth/common/context';
import { collect, dial, invoke, outgoingMetadata } from '@berth/common/grpc-client';
import type { Mount } from '@berth/common/mount';
import {
  type PrepareSnapshotResponse,
  type Info as ProtoInfo,
  Kind as ProtoKind,
  SnapshotsClient as SnapshotsGrpcClient,
  type StatSnapshotResponse,
} from '@berth/proto/containerd/services/snapshots/v1/snapshots';
import type { Kind } from './snapshots/types.js';

export type { CallContext } from '@berth/common/context';
export type { Mount } from '@berth/common/mount';

/** A snapshot as the Snapshots API describes it; `unknown` is a kind this client does not know. */
export interface SnapshotInfo {
  /** The key (active, view) or name (committed). */
  readonly name: string;
  /** The committed parent's name; '' for a base snapshot. */
  readonly parent: string;
  readonly kind: Kind | 'unknown';
  readonly labels: Readonly<Record<string, string>>;
  readonly createdAt: Date | undefined;
  readonly updatedAt: Date | undefined;
}

/**
 * The snapshotter calls of a client, each naming its snapshotter (`overlayfs`, `native`) and rejecting as the
 * RPC does (a ServiceError with containerd's errdefs code).
 */
export interface SnapshotsClient {
  /** Snapshots.Stat: not_found when `key` does not exist. */
  stat(ctx: CallContext, snapshotter: string, key: string): Promise<SnapshotInfo>;
  /** Snapshots.Prepare: an active snapshot `key` on `parent` ('' for none), and its mounts. */
  prepare(
    ctx: CallContext,
    snapshotter: string,
    key: string,
    parent: string,
    labels?: Readonly<Record<string, string>>,
  ): Promise<Mount[]>;
  /** Snapshots.Commit of the active `key` as `name`; already_exists when `name` is taken. */
  commit(
    ctx: CallContext,
    snapshotter: string,
    name: string,
    key: string,
    labels?: Readonly<Record<string, string>>,
  ): Promise<void>;
  /** Snapshots.Remove. */
  remove(ctx: CallContext, snapshotter: string, key: string): Promise<void>;
  /** Snapshots.List (every block of the server stream), with containerd filters. */
  list(ctx: CallContext, snapshotter: string, filters?: readonly string[]): Promise<SnapshotInfo[]>;
  close(): void;
}

/** `containerd.services.snapshots.v1.Snapshots` at `address` (mTLS over TCP when configured). */
export function remoteSnapshots(address: string): SnapshotsClient {
  return snapshotsOver(dial(SnapshotsGrpcClient, address));
}

/**
 * A SnapshotsClient over an existing gRPC client (one sharing a node connection); `close` closes it. Mounts
 * are returned as the server sent them (with containerd's `target`, which Diff.Apply is handed back).
 */
export function snapshotsOver(client: SnapshotsGrpcClient): SnapshotsClient {
  return {
    async stat(ctx, snapshotter, key) {
      const res = await invoke<StatSnapshotResponse>((md, o, cb) => client.stat({ snapshotter, key }, md, o, cb), ctx);
      return infoFromProto(res.info);
    },
    async prepare(ctx, snapshotter, key, parent, labels = {}) {
      const res = await invoke<PrepareSnapshotResponse>(
        (md, o, cb) => client.prepare({ snapshotter, key, parent, labels: { ...labels } }, md, o, cb),
        ctx,
      );
      return res.mounts;
    },
    async commit(ctx, snapshotter, name, key, labels = {}) {
      await invoke((md, o, cb) => client.commit({ snapshotter, name, key, labels: { ...labels } }, md, o, cb), ctx);
    },
    async remove(ctx, snapshotter, key) {
      await invoke((md, o, cb) => client.remove({ snapshotter, key }, md, o, cb), ctx);
    },
    async list(ctx, snapshotter, filters = []) {
      const pages = await collect(
        client.list({ snapshotter, filters: [...filters] }, outgoingMetadata(ctx)),
        ctx.signal,
      );
      return pages.flatMap((p) => p.info).map(infoFromProto);
    },
    close: () => client.close(),
  };
}

const kinds: Partial<Record<ProtoKind, Kind>> = {
  [ProtoKind.VIEW]: 'view',
  [ProtoKind.ACTIVE]: 'active',
  [ProtoKind.COMMITTED]: 'committed',
};

function infoFromProto(i: ProtoInfo | undefined): SnapshotInfo {
  return {
    name: i?.name ?? '',
    parent: i?.parent ?? '',
    kind: (i && kinds[i.kind]) ?? 'unknown',
    labels: i?.labels ?? {},
    createdAt: i?.createdAt,
    updatedAt: i?.updatedAt,
  };
}
