import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, statfsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { type CtrResult, ctr, tableRows } from './src/ctr.js';

const GiB = 1024 ** 3;

/** ctr with stdin from a file and stdout hashed instead of buffered: for the 1 GiB blob. */
function ctrStream(
  socket: string,
  args: readonly string[],
  opts: { namespace?: string; stdinFile?: string } = {},
): { done: Promise<{ code: number | null; stderr: string; sha256: string; bytes: number }> } {
  const full = ['--address', socket, ...(opts.namespace ? ['--namespace', opts.namespace] : []), ...args];
  const fd = opts.stdinFile ? openSync(opts.stdinFile, 'r') : 'ignore';
  const child = spawn('ctr', full, { stdio: [fd, 'pipe', 'pipe'] });
  if (typeof fd === 'number') closeSync(fd);
  const hash = createHash('sha256');
  let bytes = 0;
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    hash.update(d);
    bytes += d.length;
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return {
    done: new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code) => resolve({ code, stderr, sha256: `sha256:${hash.digest('hex')}`, bytes }));
    }),
  };
}

describe('ctr content against berthd (all-in-one, filesystem blobs)', () => {
  let d: BerthdProcess;
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'berth-e2e-content-'));
    // ctr ingests without a lease: a collection the scheduler starts on its own may take a blob before the test
    // uses it (containerd #8570, the same on containerd). These tests are about content and snapshots, not gc.
    d = await startBerthd({ config: { 'log-level': 'warn', gc: { automatic: false } } });
  });
  afterAll(async () => {
    await d?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('ingests a 1 GiB random file, shows it as active meanwhile, and gets identical bytes back', async () => {
    const fs = statfsSync(work);
    // The source file, the ingest and the committed blob (the rename reuses the ingest's blocks) plus slack.
    expect(fs.bavail * fs.bsize, 'free disk for the 1 GiB end-to-end test').toBeGreaterThan(3 * GiB);
    const file = join(work, 'big');
    execFileSync('sh', ['-c', `head -c 1G /dev/urandom > ${file}`]);
    const digest = `sha256:${execFileSync('sha256sum', [file]).toString().split(' ')[0]}`;

    const started = Date.now();
    const ingest = ctrStream(
      d.socket,
      ['content', 'ingest', '--expected-size', String(GiB), '--expected-digest', digest, 'big-ref'],
      {
        stdinFile: file,
      },
    );
    // `ctr content active` lists the ingest (ListStatuses) while it runs.
    let seenActive: string[] | undefined;
    for (let i = 0; i < 400 && !seenActive; i++) {
      const active = await ctr(d.socket, ['content', 'active']);
      expect(active.code, active.stderr).toBe(0);
      expect(active.stdout.split('\n')[0]?.trim().split(/\s+/)).toEqual(['REF', 'SIZE', 'AGE']);
      const row = tableRows(active.stdout).find((r) => r[0] === 'big-ref');
      if (row) seenActive = row;
      else await new Promise((r) => setTimeout(r, 25));
    }
    const result = await ingest.done;
    const seconds = (Date.now() - started) / 1000;
    expect(result.code, result.stderr).toBe(0);
    expect(seenActive?.[0]).toBe('big-ref');
    console.log(`ctr content ingest 1 GiB: ${seconds.toFixed(1)} s, ${(GiB / 1e6 / seconds).toFixed(0)} MB/s`);
    expect(tableRows((await ctr(d.socket, ['content', 'active'])).stdout)).toEqual([]);

    const t = Date.now();
    const got = await ctrStream(d.socket, ['content', 'get', digest]).done;
    expect(got.code, got.stderr).toBe(0);
    console.log(`ctr content get 1 GiB: ${((Date.now() - t) / 1000).toFixed(1)} s`);
    expect(got.bytes).toBe(GiB);
    expect(got.sha256).toBe(digest);

    const ls = await ctr(d.socket, ['content', 'ls']);
    expect(ls.code, ls.stderr).toBe(0);
    const row = tableRows(ls.stdout).find((r) => r[0] === digest);
    expect(row?.[1]).toBe('1.074GB');
    expect(row?.[row.length - 1]).toBe('-');
    expect((await ctr(d.socket, ['content', 'ls', '-q'])).stdout.split('\n')).toContain(digest);
    await rm(file);

    // Committing the same digest again is not an error for ctr: containerd's client treats AlreadyExists as done.
    const small = join(work, 'again');
    writeFileSync(small, 'x');
    const again = await ctrStream(d.socket, ['content', 'ingest', '--expected-digest', digest, 'again-ref'], {
      stdinFile: small,
    }).done;
    expect(again.code, again.stderr).toBe(0);

    const rmResult = await ctr(d.socket, ['content', 'rm', digest]);
    expect(rmResult.code, rmResult.stderr).toBe(0);
    expect(rmResult.stdout.trim()).toBe(digest);
    expect((await ctr(d.socket, ['content', 'ls', '-q'])).stdout.trim()).toBe('');
  }, 600_000);

  it('labels content: set, replace and remove, as ctr content label prints them', async () => {
    const file = join(work, 'label-me');
    const data = randomBytes(4096);
    writeFileSync(file, data);
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    // ctr ingests without a lease, so a collection the previous test's `content rm` scheduled may take the blob
    // before it is labelled (containerd #8570, the same on containerd): then ingest it again, as a user would.
    let set: CtrResult = { code: 1, stdout: '', stderr: '' };
    for (let attempt = 0; attempt < 3 && set.code !== 0; attempt++) {
      const ing = await ctrStream(d.socket, ['content', 'ingest', 'label-ref'], { stdinFile: file }).done;
      expect(ing.code, ing.stderr).toBe(0);
      set = await ctr(d.socket, ['content', 'label', digest, 'a=b', 'c=d']);
      if (set.code !== 0) expect(set.stderr).toMatch(/not found/);
    }
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout.trim().split(',').sort()).toEqual(['a=b', 'c=d']);
    const ls = await ctr(d.socket, ['content', 'ls']);
    const row = tableRows(ls.stdout).find((r) => r[0] === digest);
    expect(row?.[1]).toBe('4.096kB');
    expect(row?.[row.length - 1]?.split(',').sort()).toEqual(['a=b', 'c=d']);

    const removed = await ctr(d.socket, ['content', 'label', digest, 'a=']);
    expect(removed.stdout.trim()).toBe('c=d');
    const shown = await ctr(d.socket, ['content', 'label', digest]);
    expect(shown.stdout.trim()).toBe('c=d');
    const filtered = await ctr(d.socket, ['content', 'ls', '-q', 'labels.c==d']);
    expect(filtered.stdout.trim()).toBe(digest);
    expect((await ctr(d.socket, ['content', 'ls', '-q', 'labels.a==b'])).stdout.trim()).toBe('');
  });

  it('refuses bad input with containerd messages and stores nothing', async () => {
    const file = join(work, 'bad');
    writeFileSync(file, 'some bytes');
    const wrong = `sha256:${'0'.repeat(64)}`;
    const mismatch = await ctrStream(d.socket, ['content', 'ingest', '--expected-digest', wrong, 'bad-ref'], {
      stdinFile: file,
    }).done;
    expect(mismatch.code).not.toBe(0);
    expect(mismatch.stderr).toContain(`unexpected commit digest sha256:`);
    expect(mismatch.stderr).toContain(`expected ${wrong}: failed precondition`);

    const size = await ctrStream(d.socket, ['content', 'ingest', '--expected-size', '11', 'bad-size'], {
      stdinFile: file,
    }).done;
    expect(size.code).not.toBe(0);
    expect(size.stderr).toContain('failed to read expected number of bytes: unexpected EOF');

    const missing = await ctr(d.socket, ['content', 'get', wrong]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain(`ctr: content digest ${wrong}: not found`);
    const malformed = await ctr(d.socket, ['content', 'get', 'sha256:nothex']);
    expect(malformed.code).not.toBe(0);
    expect(malformed.stderr).toContain('invalid checksum digest');

    const ls = await ctr(d.socket, ['content', 'ls', '-q']);
    expect(ls.stdout).not.toContain(wrong);
    // The interrupted ingests stay listed (resumable), as on containerd; abort is the client's business.
    const active = tableRows((await ctr(d.socket, ['content', 'active'])).stdout).map((r) => r[0]);
    expect(active).toEqual(expect.arrayContaining(['bad-ref', 'bad-size']));
  });

  it('keeps namespaces apart, creates the namespace, and keeps a namespace with blobs from deletion', async () => {
    const file = join(work, 'iso');
    const data = randomBytes(1000);
    writeFileSync(file, data);
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const ing = await ctrStream(d.socket, ['content', 'ingest', 'iso-ref'], { stdinFile: file, namespace: 'team-a' })
      .done;
    expect(ing.code, ing.stderr).toBe(0);
    expect((await ctr(d.socket, ['content', 'ls', '-q'], { namespace: 'team-a' })).stdout.trim()).toBe(digest);
    expect((await ctr(d.socket, ['content', 'ls', '-q'], { namespace: 'team-b' })).stdout.trim()).toBe('');
    const other = await ctr(d.socket, ['content', 'get', digest], { namespace: 'team-b' });
    expect(other.stderr).toContain(`content digest ${digest}: not found`);

    expect((await ctr(d.socket, ['namespaces', 'ls', '-q'])).stdout.split('\n')).toContain('team-a');
    const del = await ctr(d.socket, ['namespaces', 'rm', 'team-a']);
    expect(del.stderr).toContain('namespace "team-a" must be empty, but it still has blobs');
    expect((await ctr(d.socket, ['content', 'rm', digest], { namespace: 'team-a' })).code).toBe(0);
    const del2 = await ctr(d.socket, ['namespaces', 'rm', 'team-a']);
    expect(del2.code, del2.stderr).toBe(0);
  });
});
