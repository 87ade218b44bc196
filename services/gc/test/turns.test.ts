import { backgroundContext } from '@berth/common/context';
import { nopLogger } from '@berth/common/log';
import { describe, expect, it } from 'vitest';
import { createCollector } from '../src/collector.js';
import { inProcessOwners, type Owners } from '../src/index.js';
import { ownersOnPglite } from './owners-harness.js';

/**
 * A backlog is swept in several holds of the lock. On an embedded database (PGlite) every statement resolves
 * through promises alone, so without a turn of the event loop between two holds, writers in the same process
 * (all-in-one) waited for the whole backlog: seconds for 45,000 records (bench gc-pause).
 */
describe('gc backlog sweep in several holds (PGlite, in process)', () => {
  const t = ownersOnPglite();

  it('lets the event loop take other work between two holds of the lock', async () => {
    const bg = backgroundContext(nopLogger, 'turns');
    const ss = t.owners.snapshots.snapshotters.get('native');
    if (!ss) throw new Error('native snapshotter missing');
    for (let i = 0; i < 12; i++) {
      await ss.prepare(bg, `loose-${i}-active`, '', {});
      await ss.commit(bg, `loose-${i}`, `loose-${i}-active`, {});
    }
    // A ticker that advances only when the event loop turns (its own I/O phase, not a microtask).
    let ticks = 0;
    let ticking = true;
    const tick = (): void => {
      ticks++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const inner = inProcessOwners(t.db, t.owners.parts, { contentGraceMs: 0, deleteTimeoutMs: 5_000 }, nopLogger);
    const seen: number[] = [];
    const owned: Owners = {
      ...inner,
      exclusive: (fn) => {
        seen.push(ticks);
        return inner.exclusive(fn);
      },
    };
    const stats = await createCollector({ owners: owned, log: nopLogger, removalsPerPause: 3 }).collect();
    ticking = false;
    expect(stats.removed.snapshots).toBe(12);
    expect(seen.length).toBe(4);
    for (let i = 1; i < seen.length; i++)
      expect(seen[i], `no turn before hold ${i + 1}`).toBeGreaterThan(seen[i - 1] ?? 0);
  });
});
