import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { startBerthd } from './src/berthd.js';

/**
 * The embedded default's memory (issue 18): berthd on PGlite idled at 814 MB resident (high-water 892 MB)
 * when PGlite's initdb ran in the daemon and its 128 MB buffer pool was zeroed at start. Bounds with room for
 * noise, far below those figures: measured ~165 MB idle, ~235 MB high-water.
 */
const kb = (status: string, key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1]);

describe('berthd on embedded defaults', () => {
  it('idles within 250 MB resident, never above 400 MB on the way', async () => {
    const d = await startBerthd();
    try {
      // The database opens and the task supervisor starts in the background; the first malloc trim is at 10 s.
      await new Promise((r) => setTimeout(r, 15_000));
      const status = await readFile(`/proc/${d.child.pid}/status`, 'utf8');
      expect(kb(status, 'VmRSS') / 1024, 'MB resident').toBeLessThan(250);
      expect(kb(status, 'VmHWM') / 1024, 'MB high-water').toBeLessThan(400);
    } finally {
      await d.stop();
    }
  }, 90_000);
});
