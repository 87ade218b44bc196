import type { CallContext } from '@berth/common/context';
import { isFailedPrecondition } from '@berth/common/errors';
import { dial, invoke } from '@berth/common/grpc-client';
import { type CollectResponse, GCClient, type StatusResponse } from '@berth/proto/berth/internal/v1/gc';
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
  collect(ctx: CallContext): Promise<CollectionStats>;
  status(ctx: CallContext): Promise<GcStatus>;
}

/** How long a collect call looks for the leader (a takeover completes within 15 s). */
const findLeaderMs = 20_000;
const retryMs = 100;

/**
 * A client of `berth.internal.v1.GC` at `address` (one collector, or every replica of one: only the leader
 * collects, and the others refuse with FailedPrecondition, so a collect moves on to the next replica of the
 * round-robin until the leader answers, or waits out a takeover).
 */
export function gcClient(address: string): GcClient & { close(): void } {
  const client = dial(GCClient, address);
  return {
    async collect(ctx) {
      const until = Date.now() + findLeaderMs;
      let refused: unknown;
      for (;;) {
        try {
          const res = await invoke<CollectResponse>((md, opts, cb) => client.collect({}, md, opts, cb), ctx);
          if (!res.stats) throw new Error('gc answered without stats');
          return statsFromPb(res.stats);
        } catch (e) {
          // Out of time while looking for the leader: say so, rather than that the call was cancelled.
          if (ctx.signal.aborted && refused) throw refused;
          if (!notLeader(e) || Date.now() >= until || ctx.signal.aborted) throw e;
          refused = e;
          await new Promise((r) => setTimeout(r, retryMs));
        }
      }
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

const notLeader = (e: unknown): boolean =>
  isFailedPrecondition(e) && e instanceof Error && e.message.includes('not the leader');
