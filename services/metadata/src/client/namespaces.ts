import type { CallContext } from '@berth/common/context';
import { invoke } from '@berth/common/grpc-client';
import type {
  GetNamespaceResponse,
  NamespacesClient as NamespacesGrpcClient,
} from '@berth/proto/containerd/services/namespaces/v1/namespace';
import type { Namespace } from '../namespaces/types.js';

/** containerd's Namespaces API, as a client of a node uses it; each call rejects as the RPC does. */
export interface NamespacesClient {
  /** The namespace and its labels (Berth's metadata answers an unknown one with no labels, as ctr expects). */
  get(ctx: CallContext, name: string): Promise<Namespace>;
}

/** A NamespacesClient over a gRPC client (one sharing a node connection). */
export function namespacesOver(client: NamespacesGrpcClient): NamespacesClient {
  return {
    async get(ctx, name) {
      const res = await invoke<GetNamespaceResponse>((md, o, cb) => client.get({ name }, md, o, cb), ctx);
      return { name: res.namespace?.name ?? name, labels: res.namespace?.labels ?? {} };
    },
  };
}
