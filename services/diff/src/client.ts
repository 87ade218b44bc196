/**
 * @berth/diff/client: how clients reach a node's differ (containerd's Diff API), as the unpack of a pulled
 * image does. A gRPC proxy only: nothing in berthd applies layers in process (the differ needs the mounts a
 * client prepared through the node's socket).
 */
import type { CallContext } from '@berth/common/context';
import { dial, invoke } from '@berth/common/grpc-client';
import type { Mount } from '@berth/common/mount';
import { type Descriptor, descriptorFromProto, descriptorToProto } from '@berth/common/oci';
import { type ApplyResponse, DiffClient as DiffGrpcClient } from '@berth/proto/containerd/services/diff/v1/diff';
import type { Mount as ProtoMount } from '@berth/proto/containerd/types/mount';

export type { CallContext } from '@berth/common/context';

/** The differ calls of a client, rejecting as the RPC does (a ServiceError with containerd's errdefs code). */
export interface DiffClient {
  /**
   * Diff.Apply: unpacks the layer `desc` (a blob in content) into `mounts` (an active snapshot's, as Prepare
   * returned them). Returns the descriptor of what was applied, the uncompressed layer (its digest is the diff
   * ID), or undefined when the differ names none.
   */
  apply(ctx: CallContext, desc: Descriptor, mounts: readonly Mount[]): Promise<Descriptor | undefined>;
  close(): void;
}

/** `containerd.services.diff.v1.Diff` at `address` (mTLS over TCP when configured). */
export function remoteDiff(address: string): DiffClient {
  return diffOver(dial(DiffGrpcClient, address));
}

/** A DiffClient over an existing gRPC client (one sharing a node connection); `close` closes it. */
export function diffOver(client: DiffGrpcClient): DiffClient {
  return {
    async apply(ctx, desc, mounts) {
      const res = await invoke<ApplyResponse>(
        (md, o, cb) =>
          client.apply({ diff: descriptorToProto(desc), mounts: mounts.map(mountToProto), payloads: {} }, md, o, cb),
        ctx,
      );
      return res.applied && descriptorFromProto(res.applied);
    },
    close: () => client.close(),
  };
}

/** The wire mount; a snapshotter's `target` (which Berth's leave empty) goes back as it came. */
function mountToProto(m: Mount & { readonly target?: unknown }): ProtoMount {
  return {
    type: m.type,
    source: m.source,
    target: typeof m.target === 'string' ? m.target : '',
    options: [...m.options],
  };
}
