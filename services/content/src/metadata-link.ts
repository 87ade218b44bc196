import * as grpc from '@grpc/grpc-js';
import { ErrorCode, codeOf, isAlreadyExists } from '@berth/common/errors';
import { invoke } from '@berth/common/grpc-client';
import { channelOptions, dialTarget } from '@berth/common/grpc-server';
import type { Logger } from '@berth/common/log';
import { LeasesClient } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesClient } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import type { MetadataLink } from './content/types.js';

const callTimeoutMs = 10_000;

/**
 * MetadataLink over metadata's public gRPC API (Namespaces.Create, Leases.AddResource/DeleteResource).
 * The channel connects on first use, so a node may pass its own socket before it listens.
 */
export function createMetadataLink(address: string, log: Logger): MetadataLink & { close(): void } {
  const target = dialTarget(address);
  const creds = grpc.credentials.createInsecure();
  const namespaces = new NamespacesClient(target, creds, channelOptions);
  const leases = new LeasesClient(target, creds, channelOptions);
  const known = new Set<string>();
  let toldMissing = false;
  const deadline = (): Partial<grpc.CallOptions> => ({ deadline: Date.now() + callTimeoutMs });

  return {
    async ensureNamespace(ctx, namespace) {
      if (known.has(namespace)) return;
      try {
        await invoke((md, opts, cb) => namespaces.create({ namespace: { name: namespace, labels: {} } }, md, { ...opts, ...deadline() }, cb), ctx);
        known.add(namespace);
      } catch (e) {
        if (isAlreadyExists(e)) known.add(namespace);
        // Not remembered: the next write in this namespace tries again.
        else log.warn('could not create namespace in metadata', { namespace, err: e });
      }
    },
    async addLeaseResource(ctx, type, id) {
      if (!ctx.lease) return;
      try {
        await invoke((md, opts, cb) => leases.addResource({ id: ctx.lease ?? '', resource: { id, type } }, md, { ...opts, ...deadline() }, cb), ctx);
      } catch (e) {
        if (codeOf(e) !== ErrorCode.NotImplemented) throw e;
        if (toldMissing) return;
        toldMissing = true;
        log.debug('metadata does not implement leases; content is not attached to leases', { lease: ctx.lease });
      }
    },
    async removeLeaseResource(ctx, type, id) {
      if (!ctx.lease) return;
      try {
        await invoke((md, opts, cb) => leases.deleteResource({ id: ctx.lease ?? '', resource: { id, type } }, md, { ...opts, ...deadline() }, cb), ctx);
      } catch (e) {
        ctx.log.debug('detaching from lease failed', { lease: ctx.lease, type, id, err: e });
      }
    },
    close() {
      namespaces.close();
      leases.close();
    },
  };
}
