import type { RequestContext } from '@berth/common/context';
import { invoke } from '@berth/common/grpc-client';
import { channelOptions, dialTarget } from '@berth/common/grpc-server';
import { ContainersClient, type GetContainerResponse } from '@berth/proto/containerd/services/containers/v1/containers';
import * as grpc from '@grpc/grpc-js';

/** What a task needs of its container record, which metadata owns. */
export interface ContainerRecord {
  readonly id: string;
  readonly runtime: string;
  /** The OCI runtime spec as the client stored it (JSON bytes of the Any). */
  readonly spec: Buffer | undefined;
  readonly specTypeUrl: string;
}

export interface ContainersPeer {
  /** The container, or metadata's not_found (`container "x" in namespace "y": not found`). */
  get(ctx: RequestContext, id: string): Promise<ContainerRecord>;
  close(): void;
}

/** Metadata's Containers API at `address` (the node socket in all-in-one). */
export function containersPeer(address: string): ContainersPeer {
  const client = new ContainersClient(dialTarget(address), grpc.credentials.createInsecure(), channelOptions);
  return {
    async get(ctx, id) {
      const res = await invoke<GetContainerResponse>(
        (md, opts, cb) => client.get({ id }, md, { ...opts, deadline: Date.now() + 30_000 }, cb),
        { ...ctx, lease: undefined },
      );
      const c = res.container;
      return {
        id: c?.id ?? id,
        runtime: c?.runtime?.name ?? '',
        spec: c?.spec?.value,
        specTypeUrl: c?.spec?.typeUrl ?? '',
      };
    },
    close: () => client.close(),
  };
}
