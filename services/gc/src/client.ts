import type { RequestContext } from '@berth/common/context';
import { invoke } from '@berth/common/grpc-client';
import { channelOptions, dialTarget } from '@berth/common/grpc-server';
import { type CollectResponse, GCClient, type StatusResponse } from '@berth/proto/berth/internal/v1/gc';
import * as grpc from '@grpc/grpc-js';
import type { CollectionStats } from './collector.js';
import { statsFromPb } from './grpc/convert.js';

export type { CollectionStats } from './collector.js';

export interface GcStatus {
  readonly leader: boolean;
  readonly collections: number;
  readonly failures: number;
  readonly last: CollectionStats | undefined;
}

/**
 * The garbage collector as its callers see it, in process (the module) or over gRPC (`gcClient`): metadata's
 * sync deletes and `berth gc` use it without knowing where it runs.
 */
export interface GcClient {
  /** Resolves once a collection that started after this call has freed the space; rejects "gc failed". */
  collect(ctx: Pick<RequestContext, 'namespace' | 'lease' | 'signal'>): Promise<CollectionStats>;
  status(ctx: Pick<RequestContext, 'namespace' | 'lease' | 'signal'>): Promise<GcStatus>;
}

/** A client of `berth.internal.v1.GC` at `address`. */
export function gcClient(address: string): GcClient & { close(): void } {
  const client = new GCClient(dialTarget(address), grpc.credentials.createInsecure(), channelOptions);
  return {
    async collect(ctx) {
      const res = await invoke<CollectResponse>((md, opts, cb) => client.collect({}, md, opts, cb), ctx);
      if (!res.stats) throw new Error('gc answered without stats');
      return statsFromPb(res.stats);
    },
    async status(ctx) {
      const res = await invoke<StatusResponse>((md, opts, cb) => client.status({}, md, opts, cb), ctx);
      return {
        leader: res.leader,
        collections: res.collections,
        failures: res.failures,
        last: res.last ? statsFromPb(res.last) : undefined,
      };
    },
    close: () => client.close(),
  };
}
