import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { spreadSubdirectories, spreadsSubdirectories } from './spread-dirs.js';

describe('spreadSubdirectories', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('sets the flag chattr +T sets, and lsattr sees it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-spread-'));
    dirs.push(dir);
    const sub = join(dir, 'snapshots');
    await mkdir(sub);
    expect(spreadsSubdirectories(sub)).toBe(false);
    // The test machines' /tmp is ext4: the flag must take there (elsewhere the call only reports false).
    expect(spreadSubdirectories(sub)).toBe(true);
    expect(spreadsSubdirectories(sub)).toBe(true);
    expect(spreadSubdirectories(sub)).toBe(true);
    const attrs = execFileSync('lsattr', ['-d', sub], { encoding: 'utf8' }).split(' ')[0] ?? '';
    expect(attrs).toContain('T');
  });

  it('reports false on a file system without the flag, and throws for a missing directory', async () => {
    expect(spreadSubdirectories('/proc')).toBe(false);
    expect(() => spreadSubdirectories(join(tmpdir(), 'berth-no-such-dir'))).toThrow(/ENOENT/);
  });
});
