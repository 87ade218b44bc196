/**
 * Diff.Diff streams the layer it builds: `ctr snapshots diff` of a snapshot holding a 1 GiB change grows the
 * resident memory of berthd (which serves Diff and Content in one process) by less than 100 MiB.
 * The size is an env knob (BERTH_DIFF_MEMORY_BYTES, default 1 GiB).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { residentMemory } from '@berth/testing/proc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr } from './src/ctr.js';
import { mountAsPrinted } from './src/mounts.js';

const changeBytes = Number(process.env['BERTH_DIFF_MEMORY_BYTES'] ?? 1024 * 1024 * 1024);
const MiB = 1024 * 1024;

describe('Diff.Diff memory (ctr snapshots diff of a large change)', () => {
  let d: BerthdProcess;
  let mnt: string;
  beforeAll(async () => {
    d = await startBerthd();
    mnt = await mkdtemp('/tmp/berth-e2e-diffmem-');
  });
  afterAll(async () => {
    await d?.stop();
    await rm(mnt, { recursive: true, force: true });
  });

  const run = async (args: string[]): Promise<string> => {
    const r = await ctr(d.socket, args, { timeoutMs: 300_000 });
    expect(r.code, `ctr ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  it(`a ${changeBytes / MiB} MiB change grows berthd's resident memory by less than 100 MiB`, async () => {
    await run(['snapshots', 'prepare', 'base-w', '']);
    await run(['snapshots', 'commit', 'base', 'base-w']);
    await run(['snapshots', 'prepare', 'work', 'base']);
    mountAsPrinted((await run(['snapshots', 'mounts', mnt, 'work'])).trim());
    try {
      // Sparse: the bytes read back are zeros, cheap for the disk; the differ streams them all the same.
      execFileSync('truncate', ['-s', String(changeBytes), join(mnt, 'big')]);
      await writeFile(join(mnt, 'small'), 'small');
    } finally {
      execFileSync('umount', [mnt]);
    }

    const pid = d.child.pid ?? 0;
    // Settle, then reset the peak (VmHWM) so it measures this diff alone.
    await new Promise((r) => setTimeout(r, 1_000));
    await writeFile(`/proc/${pid}/clear_refs`, '5');
    const before = residentMemory(pid);
    const out = join(mnt, '..', `${mnt.split('/').pop()}.layer.tgz`);
    const started = Date.now();
    execFileSync('sh', ['-c', `ctr --address "$1" snapshots diff work > "$2"`, 'sh', d.socket, out], {
      timeout: 300_000,
    });
    const seconds = (Date.now() - started) / 1000;
    const after = residentMemory(pid);
    try {
      const listing = execFileSync('tar', ['-tvzf', out]).toString();
      expect(listing).toMatch(new RegExp(`\\s${changeBytes}\\s.*\\sbig\\n`));
      expect(listing).toMatch(/\ssmall\n/);
    } finally {
      await rm(out, { force: true });
    }
    const growth = after.hwm - before.rss;
    console.log(
      `diff of ${changeBytes / MiB} MiB: ${seconds.toFixed(1)} s; berthd RSS before ${(before.rss / MiB).toFixed(0)} MiB, ` +
        `peak during ${(after.hwm / MiB).toFixed(0)} MiB, growth ${(growth / MiB).toFixed(1)} MiB`,
    );
    expect(growth).toBeLessThan(100 * MiB);
  }, 600_000);
});
