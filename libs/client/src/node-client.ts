/**
 * A connection to one node socket (berthd's gateway, or containerd's own): the containerd gRPC clients
 * the client library uses, sharing one HTTP/2 channel, and the per-call context (namespace, lease,
 * cancellation) that becomes the `containerd-namespace` / `containerd-lease` headers.
 */

import { channelOptions, collect, dialTarget, invoke, outgoingMetadata } from '@berth/common/grpc-client';
import { type ContentClient, contentOver } from '@berth/content/client';
import { type DiffClient, diffOver } from '@berth/diff/client';
import {
  type ImagesClient,
  imagesOver,
  type LeasesClient,
  leasesOver,
  type NamespacesClient,
  namespacesOver,
} from '@berth/metadata/client';
import { ContentClient as ContentGrpcClient } from '@berth/proto/containerd/services/content/v1/content';
import { DiffClient as DiffGrpcClient } from '@berth/proto/containerd/services/diff/v1/diff';
import { ImagesClient as ImagesGrpcClient } from '@berth/proto/containerd/services/images/v1/images';
import { LeasesClient as LeasesGrpcClient } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesClient as NamespacesGrpcClient } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import { SnapshotsClient as SnapshotsGrpcClient } from '@berth/proto/containerd/services/snapshots/v1/snapshots';
import { type SnapshotsClient, snapshotsOver } from '@berth/snapshots/client';
import * as grpc from '@grpc/grpc-js';

export type { CallContext } from '@berth/common/context';

export interface NodeClient {
  /** `@berth/content/client` over this connection (reads, label updates, the resumable ingest). */
  readonly content: ContentClient;
  /** `@berth/metadata/client`'s Images, Leases and Namespaces over this connection. */
  readonly images: ImagesClient;
  readonly leases: LeasesClient;
  /** `@berth/snapshots/client` over this connection. */
  readonly snapshots: SnapshotsClient;
  /** `@berth/diff/client` over this connection. */
  readonly diff: DiffClient;
  readonly namespaces: NamespacesClient;
  /** Closes the channel; calls in flight fail. */
  close(): void;
}

/**
 * Dials `address` (`/path.sock`, `unix:///path.sock` or `host:port`). Connecting is lazy: the first call
 * connects, as containerd's client does.
 */
export function connectNode(address: string): NodeClient {
  const target = dialTarget(address);
  const credentials = grpc.credentials.createInsecure();
  const contentStub = new ContentGrpcClient(target, credentials, channelOptions);
  const content = contentOver(contentStub);
  // Every other client shares the first one's channel: one HTTP/2 connection per process, as ctr has.
  const shared = { ...channelOptions, channelOverride: contentStub.getChannel() };
  const images = imagesOver(new ImagesGrpcClient(target, credentials, shared));
  const leases = leasesOver(new LeasesGrpcClient(target, credentials, shared));
  const snapshots = snapshotsOver(new SnapshotsGrpcClient(target, credentials, shared));
  const diff = diffOver(new DiffGrpcClient(target, credentials, shared));
  const namespaces = namespacesOver(new NamespacesGrpcClient(target, credentials, shared));
  return {
    content,
    images,
    leases,
    snapshots,
    diff,
    namespaces,
    close() {
      content.close();
    },
  };
}

export { collect, invoke, outgoingMetadata };
