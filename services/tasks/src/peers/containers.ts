import { type RequestContext, withoutLease } from '@berth/common/context';
import { invoke } from '@berth/common/grpc-client';
import { channelOptions, dialTarget } from '@berth/common/grpc-server';
import { channelCredentialsFor } from '@berth/common/tls/credentials';
import { ContainersClient, type GetContainerResponse } from '@berth/proto/containerd/services/containers/v1/containers';

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

/** The fields read from a container as metadata returns it, on the wire or from its domain layer alike. */
export interface ContainerFields {
  readonly id: string;
  readonly runtime?: { readonly name: string } | undefined;
  readonly spec?: { readonly typeUrl: string; readonly value: Uint8Array } | undefined;
}

/** Containers.Get: rejects as the RPC does. */
export type GetContainer = (ctx: RequestContext, id: string) => Promise<ContainerFields | undefined>;

/** Metadata's Containers API at `address` (split mode; all-in-one calls metadata in process, see localContainersPeer). */
export function containersPeer(address: string): ContainersPeer {
  const client = new ContainersClient(dialTarget(address), channelCredentialsFor(address), channelOptions);
  const get: GetContainer = async (ctx, id) => {
    const res = await invoke<GetContainerResponse>(
      (md, opts, cb) => client.get({ id }, md, { ...opts, deadline: Date.now() + 30_000 }, cb),
      ctx,
    );
    return res.container;
  };
  return { get: recordGetter(get), close: () => client.close() };
}

/** Container records from a metadata in this process; `get` must answer and fail as Containers.Get does. */
export function localContainersPeer(get: GetContainer): ContainersPeer {
  return { get: recordGetter(get), close: () => undefined };
}

/** Asks without the request's lease, which a read of a container record has no use for. */
function recordGetter(get: GetContainer): ContainersPeer['get'] {
  return async (ctx, id) => {
    const c = await get(withoutLease(ctx), id);
    const spec = c?.spec?.value;
    return {
      id: c?.id ?? id,
      runtime: c?.runtime?.name ?? '',
      spec: spec && Buffer.from(spec.buffer, spec.byteOffset, spec.byteLength),
      specTypeUrl: c?.spec?.typeUrl ?? '',
    };
  };
}
