/**
 * Crash safety: berthd killed with SIGKILL in the middle of a pull of a many-files image and in the middle of
 * a large `ctr content ingest`. After a restart on the same root, no partial blob is visible (every listed
 * blob's bytes match its digest), the interrupted ingest is resumable under its ref and completes at once
 * (no wait for the dead process's lock), and the same pull completes with `ctr images check` reporting it
 * complete and the unpacked rootfs exactly the image's tree. Nothing of the killed unpack stays on the node:
 * no temporary `mnt-*` mount of the diff service, no staged tree under `<root>/diff-ahead` (unpack-ahead).
 * The pull runs twice: with unpack-ahead (the default), killed while its extractions run in the background,
 * and without it, killed while Diff.Apply has the bottom layer's snapshot mounted on a temporary `mnt-*`
 * directory (with unpack-ahead that layer is extracted into diff-ahead and adopted by rename, so no mount
 * is made and the stale-mount removal at startup would go untested).
 *
 * Knobs: BERTH_CRASH_INGEST_BYTES (default 256 MiB; the full form is 1 GiB), BERTH_CRASH_FILES
 * (files in the many-files image, default 6000) and BERTH_CRASH_IMAGE_BYTES (default 48 MiB).
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type BuiltImage, compareTree, manyFilesImage, pushImage } from '@berth/testing/images';
import { descendants, isAlive, mountsUnder, within } from '@berth/testing/proc';
import { type Registry, startRegistry } from '@berth/testing/registry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { activeBytes, ctr, snapshotRows, tableRows } from './src/ctr.js';
import { mountCommand } from './src/mounts.js';

const exec = promisify(execFile);
const MiB = 1024 * 1024;
const ingestBytes = Number(process.env['BERTH_CRASH_INGEST_BYTES'] ?? 256 * MiB);
const imageFiles = Number(process.env['BERTH_CRASH_FILES'] ?? 6000);
const imageBytes = Number(process.env['BERTH_CRASH_IMAGE_BYTES'] ?? 48 * MiB);

describe('crash safety: SIGKILL berthd mid-work, restart, finish', () => {
  let dir: string;
  let d: BerthdProcess;
  let registry: Registry;
  let image: BuiltImage;
  let ref: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-e2e-crash-'));
    d = await startBerthd({ dir });
    registry = await startRegistry();
    image = await manyFilesImage({ files: imageFiles, bytes: imageBytes, layers: 4 });
    ref = await pushImage(registry, 'test/many', 'latest', image);
  }, 300_000);
  afterAll(async () => {
    await registry?.stop();
    await d?.stop();
    // Mounts a killed berthd may have left are its own, under this test's dir.
    for (const m of mountsUnder(dir).reverse()) execFileSync('umount', ['-l', m]);
    await rm(dir, { recursive: true, force: true });
  });

  /** berthd's environment: unpack-ahead on (the default) or off. */
  let env: Record<string, string> = {};

  /** SIGKILL, as a crash or the OOM killer would; then a new berthd on the same root and state. */
  async function crashAndRestart(): Promise<void> {
    const pid = d.child.pid ?? 0;
    const children = descendants(pid).map((p) => p.pid);
    d.child.kill('SIGKILL');
    await within(10_000, () => !isAlive(pid));
    // Its tar / zstd children see their pipes close and go; wait so they cannot race the new process.
    await within(10_000, () => children.every((c) => !isAlive(c)));
    d = await startBerthd({ dir, env });
  }

  const diffDir = (): string => join(dir, 'state', 'diff');
  const aheadDir = (): string => join(dir, 'root', 'diff-ahead');
  const entries = (path: string): string[] => (existsSync(path) ? readdirSync(path) : []);

  const run = async (args: string[], namespace: string, timeoutMs = 180_000): Promise<string> => {
    const r = await ctr(d.socket, args, { namespace, timeoutMs });
    expect(r.code, `ctr ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  /** Every blob the namespace lists reads back as the bytes its digest names: nothing partial is visible. */
  async function expectOnlyWholeBlobs(namespace: string): Promise<number> {
    const digests = (await run(['content', 'ls', '-q'], namespace)).split('\n').filter((l) => l !== '');
    for (const digest of digests) {
      const { stdout } = await exec(
        'sh',
        ['-c', `ctr --address "$1" --namespace "$2" content get "$3" | sha256sum`, 'sh', d.socket, namespace, digest],
        { maxBuffer: 1 << 20 },
      );
      expect(`sha256:${stdout.split(' ')[0]}`, `blob ${digest} reads back other bytes`).toBe(digest);
    }
    return digests.length;
  }

  it(`a ${ingestBytes / MiB} MiB ctr content ingest: killed mid-stream, resumed after the restart`, {
    timeout: 300_000,
  }, async () => {
    const ns = 'crash-ingest';
    const file = join(dir, 'ingest.bin');
    const hash = createHash('sha256');
    await new Promise<void>((resolve, reject) => {
      const out = createWriteStream(file);
      out.once('error', reject);
      for (let left = ingestBytes; left > 0; left -= 4 * MiB) {
        const piece = randomBytes(Math.min(4 * MiB, left));
        hash.update(piece);
        out.write(piece);
      }
      out.end(resolve);
    });
    const digest = `sha256:${hash.digest('hex')}`;
    const ingestArgs = ['content', 'ingest', '--expected-size', String(ingestBytes), '--expected-digest', digest];
    const ingest = (): ReturnType<typeof spawn> =>
      spawn(
        'sh',
        [
          '-c',
          `exec ctr --address "$1" --namespace ${ns} ${ingestArgs.join(' ')} big-ref < "$2"`,
          'sh',
          d.socket,
          file,
        ],
        {
          stdio: 'ignore',
        },
      );
    const first = ingest();
    const firstDone = new Promise((r) => first.once('exit', r));
    const offset = (): number => {
      const out = execFileSync('ctr', ['--address', d.socket, '--namespace', ns, 'content', 'active']).toString();
      return activeBytes(tableRows(out).find((r) => r[0] === 'big-ref'));
    };
    expect(await within(60_000, () => offset() >= ingestBytes / 8)).toBe(true);
    await crashAndRestart();
    await firstDone;

    expect(await run(['content', 'ls', '-q'], ns)).not.toContain(digest);
    const kept = tableRows(await run(['content', 'active'], ns));
    expect(kept.map((r) => r[0])).toEqual(['big-ref']);
    const resumedFrom = activeBytes(kept[0]);
    expect(resumedFrom).toBeGreaterThan(0);

    const started = Date.now();
    const second = ingest();
    const code = await new Promise((r) => second.once('exit', r));
    const seconds = (Date.now() - started) / 1000;
    console.log(
      `ingest: killed at ${(resumedFrom / MiB).toFixed(0)} of ${ingestBytes / MiB} MiB; resumed and committed in ${seconds.toFixed(1)} s`,
    );
    expect(code).toBe(0);
    // A lock left by the killed process must not hold the ref (it would for its 30 s lease).
    expect(seconds).toBeLessThan(20);
    expect(tableRows(await run(['content', 'active'], ns))).toEqual([]);
    expect(await run(['content', 'ls', '-q'], ns)).toContain(digest);
    expect(await expectOnlyWholeBlobs(ns)).toBe(1);
  });

  const variants = [
    { name: 'with unpack-ahead', ns: 'crash-pull', ahead: true },
    {
      name: 'without unpack-ahead, killed while a layer is applied on a temporary mount',
      ns: 'crash-pull-mnt',
      ahead: false,
    },
  ] as const;

  it.each(variants)(
    `a pull of a ${imageFiles}-file image, $name: killed mid-unpack, the same pull completes after the restart`,
    {
      timeout: 600_000,
    },
    async ({ ns, ahead }) => {
      const wanted: Record<string, string> = ahead ? {} : { BERTH_UNPACK_AHEAD: 'false' };
      if (JSON.stringify(wanted) !== JSON.stringify(env)) {
        env = wanted;
        await d.stop();
        d = await startBerthd({ dir, env });
      }
      const pull = spawn('ctr', ['--address', d.socket, '--namespace', ns, 'images', 'pull', '--plain-http', ref], {
        stdio: 'ignore',
      });
      const pulled = new Promise((r) => pull.once('exit', r));
      if (ahead) {
        // A random moment of the unpack: some layers may be done, one is being applied, others extracted ahead.
        expect(await within(120_000, () => descendants(d.child.pid ?? 0, ['tar']).length > 0)).toBe(true);
        await new Promise((r) => setTimeout(r, Math.random() * 400));
      } else {
        // The bottom layer's Apply: its snapshot (a bind mount) mounted on <state>/diff/mnt-*, tar writing into it.
        expect(await within(120_000, () => mountsUnder(diffDir()).length > 0)).toBe(true);
      }
      const staged = entries(aheadDir()).length;
      const mounted = mountsUnder(diffDir()).length;
      await crashAndRestart();
      await pulled;
      console.log(`pull (${ahead ? 'ahead' : 'no ahead'}): killed with ${staged} staged trees, ${mounted} diff mounts`);
      if (!ahead) expect(mounted).toBeGreaterThan(0);

      const whole = await expectOnlyWholeBlobs(ns);
      // The diff service's temporary mounts of the dead process are gone too.
      expect(mountsUnder(diffDir())).toEqual([]);
      expect(entries(diffDir()).filter((n) => n.startsWith('mnt-'))).toEqual([]);

      await run(['images', 'pull', '--plain-http', ref], ns, 300_000);
      expect(await run(['images', 'check'], ns)).toMatch(/complete \((\d+)\/\1\)/);
      // No staged tree is left: the killed process's went at the restart, this pull's were adopted.
      expect(await within(10_000, () => entries(aheadDir()).length === 0)).toBe(true);
      expect(mountsUnder(diffDir())).toEqual([]);
      expect(entries(diffDir()).filter((n) => n.startsWith('mnt-'))).toEqual([]);
      const snapshots = snapshotRows(await run(['snapshots', 'ls'], ns));
      const committed = snapshots.filter((r) => r.kind === 'Committed').map((r) => r.key);
      expect(committed).toEqual(expect.arrayContaining(image.chainIds));
      const leftover = snapshots.filter((r) => r.kind === 'Active').map((r) => r.key);
      console.log(
        `pull: ${whole} whole blobs after the crash; ${committed.length} committed snapshots; ` +
          `active snapshots left for gc: ${leftover.join(' ') || 'none'}`,
      );
      // Active snapshots left by the killed unpack are its temporary ones only (gc removes them with their lease).
      expect(leftover.every((k) => k.startsWith('extract-'))).toBe(true);

      // The unpacked rootfs is exactly the image: no file of the interrupted apply is missing or partial.
      const top = image.chainIds[image.chainIds.length - 1] ?? '';
      const mnt = await mkdtemp('/tmp/berth-e2e-crash-mnt-');
      try {
        // Mounts from the creating call: gc may collect the unreferenced view right after it is made.
        const line = mountCommand(await run(['snapshots', 'view', '--mounts', 'verify', top], ns), mnt);
        await exec('sh', ['-c', line]);
        try {
          expect(await compareTree(mnt, image.expected)).toEqual([]);
        } finally {
          await exec('umount', [mnt]);
          // Not asserted: gc may already have taken the view.
          await ctr(d.socket, ['snapshots', 'rm', 'verify'], { namespace: ns });
        }
      } finally {
        await rm(mnt, { recursive: true, force: true });
      }
    },
  );
});
