import type { RequestContext } from '@berth/common/context';
import type { Snapshotter } from './types.js';

/**
 * Told of every call of a namespace a snapshotter serves: called as it begins, the function returned as it
 * ends. The node's differ uses it (unpack-ahead): an unpack's Commit and Prepare between two Applies show its
 * client still there, however long they take.
 */
export type SnapshotCallObserver = (namespace: string) => () => void;

/** The calls a client makes per layer or container; the background methods (reconcile, idle) are not calls. */
const observedMethods = [
  'prepare',
  'view',
  'mounts',
  'commit',
  'remove',
  'stat',
  'update',
  'list',
  'usage',
  'cleanup',
] as const;

/** `sn` with every client call reported to the observers in `observers` (those there when the call begins). */
export function observedSnapshotter(sn: Snapshotter, observers: ReadonlySet<SnapshotCallObserver>): Snapshotter {
  const wrapped: Record<string, unknown> = {};
  for (const m of observedMethods) {
    const fn = sn[m] as (ctx: RequestContext, ...args: never[]) => Promise<unknown>;
    wrapped[m] = async (ctx: RequestContext, ...args: never[]): Promise<unknown> => {
      const ns = ctx.namespace;
      if (!ns || observers.size === 0) return fn.call(sn, ctx, ...args);
      const ends = [...observers].map((o) => o(ns));
      try {
        return await fn.call(sn, ctx, ...args);
      } finally {
        for (const end of ends) end();
      }
    };
  }
  return { ...sn, ...wrapped } as Snapshotter;
}
