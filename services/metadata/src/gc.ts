import type { RequestContext } from '@berth/common/context';

/**
 * What a `sync` delete (Images.Delete, Leases.Delete) waits for: a garbage collection that has removed what
 * the deletion left unreferenced. Berth's collector is its own service; without one configured, nothing is
 * collected and a sync delete returns once the delete has committed.
 */
export interface GarbageCollector {
  collect(ctx: RequestContext): Promise<void>;
}

export const noGarbageCollector: GarbageCollector = { collect: async () => undefined };
