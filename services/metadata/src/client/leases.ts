import type { CallContext } from '@berth/common/context';
import { invoke } from '@berth/common/grpc-client';
import type {
  CreateResponse,
  Lease as LeasePb,
  LeasesClient as LeasesGrpcClient,
  ListResponse,
} from '@berth/proto/containerd/services/leases/v1/leases';

/** A lease as the Leases service returns it. */
export interface LeaseRecord {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly createdAt: Date | undefined;
}

/** containerd's Leases API, as a client of a node uses it; each call rejects as the RPC does. */
export interface LeasesClient {
  /** Creates lease `id` (the server picks one when empty); already_exists when taken. */
  create(ctx: CallContext, id: string, labels: Readonly<Record<string, string>>): Promise<LeaseRecord>;
  /** not_found when absent. With `sync`, the server's garbage collection has run when it answers. */
  delete(ctx: CallContext, id: string, sync?: boolean): Promise<void>;
  /** Leases matching any of `filters` (fields `id`, `labels.*`). */
  list(ctx: CallContext, filters: readonly string[]): Promise<LeaseRecord[]>;
}

const recordFromPb = (l: LeasePb | undefined): LeaseRecord => ({
  id: l?.id ?? '',
  labels: l?.labels ?? {},
  createdAt: l?.createdAt,
});

/** A LeasesClient over a gRPC client (one sharing a node connection). */
export function leasesOver(client: LeasesGrpcClient): LeasesClient {
  return {
    async create(ctx, id, labels) {
      const res = await invoke<CreateResponse>(
        (md, o, cb) => client.create({ id, labels: { ...labels } }, md, o, cb),
        ctx,
      );
      return recordFromPb(res.lease);
    },
    async delete(ctx, id, sync = false) {
      await invoke((md, o, cb) => client.delete({ id, sync }, md, o, cb), ctx);
    },
    async list(ctx, filters) {
      const res = await invoke<ListResponse>((md, o, cb) => client.list({ filters: [...filters] }, md, o, cb), ctx);
      return res.leases.map(recordFromPb);
    },
  };
}
