import { backgroundContext } from '@berth/common/context';
import { nopLogger } from '@berth/common/log';
import { describe, expect, it } from 'vitest';
import { observedSnapshotter, type SnapshotCallObserver } from './observed.js';
import type { Snapshotter } from './types.js';

function fakeSnapshotter(gate: Promise<void>): Snapshotter {
  const fail = async (): Promise<never> => {
    throw new Error('not used');
  };
  return {
    name: 'fake',
    prepare: async () => [],
    view: fail,
    mounts: fail,
    async commit() {
      await gate;
    },
    remove: async () => {
      throw new Error('removal failed');
    },
    stat: fail,
    update: fail,
    list: async () => [],
    usage: fail,
    cleanup: async () => undefined,
    reconcile: async () => 7,
    idle: async () => undefined,
  };
}

describe('observedSnapshotter', () => {
  it('reports each call of a namespace from its beginning to its end, failed ones too', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const log: string[] = [];
    const observer: SnapshotCallObserver = (ns) => {
      log.push(`begin ${ns}`);
      return () => log.push(`end ${ns}`);
    };
    const sn = observedSnapshotter(fakeSnapshotter(gate), new Set([observer]));
    expect(sn.name).toBe('fake');
    const commit = sn.commit(backgroundContext(nopLogger, 'pull-ns'), 'name', 'key', {});
    await new Promise((r) => setTimeout(r, 10));
    // The call runs: begun, not ended.
    expect(log).toEqual(['begin pull-ns']);
    open();
    await commit;
    expect(log).toEqual(['begin pull-ns', 'end pull-ns']);
    await expect(sn.remove(backgroundContext(nopLogger, 'other'), 'key')).rejects.toThrow('removal failed');
    expect(log.slice(2)).toEqual(['begin other', 'end other']);
    // No namespace (the call fails validation inside) and background work: not a client's call.
    await sn.list(backgroundContext(nopLogger), []);
    expect(await sn.reconcile(backgroundContext(nopLogger))).toBe(7);
    expect(log).toHaveLength(4);
  });

  it('tells only the observers registered when the call begins', async () => {
    const observers = new Set<SnapshotCallObserver>();
    const sn = observedSnapshotter(fakeSnapshotter(Promise.resolve()), observers);
    let calls = 0;
    await sn.prepare(backgroundContext(nopLogger, 'ns'), 'k', '', {});
    const observer: SnapshotCallObserver = () => {
      calls++;
      return () => undefined;
    };
    observers.add(observer);
    await sn.prepare(backgroundContext(nopLogger, 'ns'), 'k', '', {});
    observers.delete(observer);
    await sn.prepare(backgroundContext(nopLogger, 'ns'), 'k', '', {});
    expect(calls).toBe(1);
  });
});
