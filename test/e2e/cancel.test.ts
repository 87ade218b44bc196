/**
 * Cancellation cleans up: when the client goes away (the real ctr killed, or its deadline passed), berthd stops
 * the work within a second. Child processes (tar, zstd) are ended, bind mounts under <state>/diff/mnt-* are
 * removed, an ingest stays resumable, a task whose Create was abandoned does not exist; the temporary
 * `extract-*` snapshot of an interrupted unpack is left, with its lease, for garbage collection.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SnapshotsClient } from '@berth/proto/containerd/services/snapshots/v1/snapshots';
import { TasksClient } from '@berth/proto/containerd/services/tasks/v1/tasks';
import type { Mount } from '@berth/proto/containerd/types/mount';
import { buildImage, busyboxImage, pushImage, singleLargeFileImage } from '@berth/testing/images';
import { descendants, mountsUnder, within } from '@berth/testing/proc';
import { type Registry, startRegistry } from '@berth/testing/registry';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { activeBytes, ctr, snapshotRows, tableRows } from './src/ctr.js';
import { mountAsPrinted } from './src/mounts.js';

const MiB = 1024 * 1024;
/** Size of the layer pulled and abandoned (env knob; big enough that tar is seen running). */
const largeBytes = Number(process.env['BERTH_CANCEL_LAYER_BYTES'] ?? 192 * MiB);

function md(namespace: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('containerd-namespace', namespace);
  return m;
}

describe('cancelled calls clean up (real ctr against berthd)', () => {
  let d: BerthdProcess;
  let dOff: BerthdProcess;
  let registry: Registry;
  let largeRef: string;
  let busyboxRef: string;
  let layersRef: string;

  beforeAll(async () => {
    // With unpack-ahead (the default) the layer is extracted from its Write's bytes as they arrive: the tar seen
    // may be that extraction's, which ends with the Write (or, once the layer committed, once no call of the
    // namespace runs any more).
    d = await startBerthd();
    dOff = await startBerthd({ env: { BERTH_UNPACK_AHEAD: 'false' } });
    registry = await startRegistry();
    largeRef = await pushImage(registry, 'test/large', 'latest', await singleLargeFileImage(largeBytes));
    busyboxRef = await pushImage(registry, 'test/busybox', 'latest', await busyboxImage());
    // Layers the unpack extracts beside the one it applies.
    const layers = [0, 1, 2].map((i) => ({
      entries: [{ kind: 'file' as const, path: `layer-${i}`, data: randomBytes(largeBytes / 4) }],
    }));
    layersRef = await pushImage(registry, 'test/layers', 'latest', await buildImage({ layers }));
  }, 300_000);
  afterAll(async () => {
    await registry?.stop();
    if (d && d.child.exitCode !== null) console.log(`berthd exited (${d.child.exitCode}):\n${d.logs().slice(-12000)}`);
    await d?.stop();
    await dOff?.stop();
  });

  const run = async (args: string[], namespace: string, timeoutMs = 120_000) => {
    const r = await ctr(d.socket, args, { namespace, timeoutMs });
    expect(r.code, `ctr ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  const workers = (on = d): number[] =>
    descendants(on.child.pid ?? 0, ['tar', 'zstd', 'gzip', 'runc']).map((p) => p.pid);
  const diffLeftovers = (on = d): string[] => {
    const dir = join(on.dir, 'state', 'diff');
    const ahead = join(on.dir, 'root', 'diff-ahead');
    return [
      ...mountsUnder(dir),
      ...(existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith('mnt-')) : []),
      ...(existsSync(ahead) ? readdirSync(ahead) : []),
    ];
  };

  // Killed while the layer downloads (with unpack-ahead its extraction runs from the Write's bytes), while its
  // Apply runs, and on the native snapshotter with unpack-ahead off, while the Apply holds its bind mount.
  const cases = [
    { snapshotter: 'overlayfs', at: 'download' },
    { snapshotter: 'overlayfs', at: 'apply' },
    { snapshotter: 'overlayfs', at: 'apply', layers: 3 },
    { snapshotter: 'native', at: 'apply', aheadOff: true },
  ] as const;
  for (const c of cases) {
    const name = `${c.snapshotter}${'aheadOff' in c ? ', unpack-ahead off' : ''}${'layers' in c ? `, ${c.layers} layers extracted ahead` : ''}`;
    it(`${name}: ctr killed mid-${c.at} ends tar and removes mounts within a second; the pull then completes`, async () => {
      const on = 'aheadOff' in c ? dOff : d;
      const ns = `cancel-${c.at}-${c.snapshotter}`;
      const args = ['--address', on.socket, '--namespace', ns, 'images', 'pull', '--plain-http'];
      const ref = 'layers' in c ? layersRef : largeRef;
      const pull = spawn('ctr', [...args, '--snapshotter', c.snapshotter, ref], { stdio: 'ignore' });
      const exited = new Promise((r) => pull.once('exit', r));
      const extracting = () => descendants(on.child.pid ?? 0, ['tar']).length > 0;
      const applying = async () =>
        snapshotRows(
          (await ctr(on.socket, ['snapshots', '--snapshotter', c.snapshotter, 'ls'], { namespace: ns })).stdout,
        ).some((r) => r.key.startsWith('extract-') && r.kind === 'Active');
      let reached = false;
      for (const end = Date.now() + 120_000; !reached && Date.now() < end; ) {
        reached = extracting() && (c.at === 'download' || (await applying()));
        if (!reached) await new Promise((r) => setTimeout(r, 20));
      }
      expect(reached, `berthd never got to extracting the layer (${c.at})`).toBe(true);
      if ('aheadOff' in c) expect(mountsUnder(join(on.dir, 'state', 'diff')).length).toBe(1);
      pull.kill('SIGKILL');
      await exited;
      const killedAt = Date.now();
      expect(await within(1_000, () => workers(on).length === 0 && diffLeftovers(on).length === 0)).toBe(true);
      console.log(`${name}: pull killed mid-${c.at}, berthd clean after ${Date.now() - killedAt} ms`);
      if (c.at === 'apply') {
        // The unpack's active snapshot stays for GC (its lease holds it), as containerd leaves it.
        const active = snapshotRows(
          (await ctr(on.socket, ['snapshots', '--snapshotter', c.snapshotter, 'ls'], { namespace: ns })).stdout,
        ).filter((r) => r.key.startsWith('extract-') && r.kind === 'Active');
        expect(active.length).toBe(1);
      }
      const again = await ctr(on.socket, ['images', 'pull', '--plain-http', '--snapshotter', c.snapshotter, ref], {
        namespace: ns,
        timeoutMs: 300_000,
      });
      expect(again.code, again.stderr).toBe(0);
      expect((await ctr(on.socket, ['images', 'check'], { namespace: ns })).stdout).toMatch(/complete \(\d+\/\d+\)/);
      expect(workers(on)).toEqual([]);
      expect(await within(2_000, () => diffLeftovers(on).length === 0)).toBe(true);
    });
  }

  it('ctr snapshots diff past its deadline: mounts removed within a second', async () => {
    const ns = 'cancel-diff';
    const mnt = await mkdtemp('/tmp/berth-e2e-cancel-');
    try {
      await run(['snapshots', '--snapshotter', 'native', 'prepare', 'base-w', ''], ns);
      await run(['snapshots', '--snapshotter', 'native', 'commit', 'base', 'base-w'], ns);
      await run(['snapshots', '--snapshotter', 'native', 'prepare', 'work', 'base'], ns);
      mountAsPrinted((await run(['snapshots', '--snapshotter', 'native', 'mounts', mnt, 'work'], ns)).trim());
      try {
        execFileSync('truncate', ['-s', String(4 * 1024 * MiB), join(mnt, 'big')]);
      } finally {
        execFileSync('umount', [mnt]);
      }
      const started = Date.now();
      const r = await ctr(d.socket, ['--timeout', '1500ms', 'snapshots', '--snapshotter', 'native', 'diff', 'work'], {
        namespace: ns,
        timeoutMs: 60_000,
      });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/deadline exceeded/);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(await within(1_000, () => diffLeftovers().length === 0)).toBe(true);
    } finally {
      await rm(mnt, { recursive: true, force: true });
    }
  });

  it('ctr content ingest killed mid-stream: the ref is resumable and the same ingest completes', async () => {
    const ns = 'cancel-ingest';
    const file = join(d.dir, 'ingest.bin');
    const data = Buffer.alloc(64 * MiB, 7);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
    await writeFile(file, data);
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    // ctr reads its stdin: a pipe fed half the bytes and then held open, so it is mid-stream when killed.
    const ingest = spawn(
      'ctr',
      ['--address', d.socket, '--namespace', ns, 'content', 'ingest', '--expected-size', String(data.length), 'ref1'],
      { stdio: ['pipe', 'ignore', 'ignore'] },
    );
    const exited = new Promise((r) => ingest.once('exit', r));
    // Writes still queued when ctr is killed fail with EPIPE: expected here.
    ingest.stdin.on('error', () => undefined);
    ingest.stdin.write(data.subarray(0, 32 * MiB));
    const offset = (): number => {
      const row = tableRows(
        execFileSync('ctr', ['--address', d.socket, '--namespace', ns, 'content', 'active']).toString(),
      )[0];
      return activeBytes(row);
    };
    const sawProgress = await within(30_000, () => offset() > 0);
    expect(sawProgress).toBe(true);
    ingest.kill('SIGKILL');
    await exited;
    await new Promise((r) => setTimeout(r, 200));
    const kept = tableRows(await run(['content', 'active'], ns));
    expect(kept.map((r) => r[0])).toEqual(['ref1']);
    // Same ref, stdin now the whole file: ctr sees the offset and resumes there (a file is seekable).
    execFileSync('sh', [
      '-c',
      `ctr --address "$1" --namespace ${ns} content ingest --expected-size ${data.length} --expected-digest ${digest} ref1 < "$2"`,
      'sh',
      d.socket,
      file,
    ]);
    expect(tableRows(await run(['content', 'active'], ns))).toEqual([]);
    expect(await run(['content', 'ls', '-q'], ns)).toContain(digest);
  });

  it('Tasks.Create past its deadline leaves no task, no runc container and no mount', async () => {
    const ns = 'cancel-tasks';
    await run(['images', 'pull', '--plain-http', busyboxRef], ns);
    const target = `unix://${d.socket}`;
    const tasks = new TasksClient(target, grpc.credentials.createInsecure());
    const snapshots = new SnapshotsClient(target, grpc.credentials.createInsecure());
    let cancelled = 0;
    let slowest = 0;
    try {
      // Deadlines from "before anything happens" to "after runc create": some land in the middle.
      for (const ms of [5, 20, 40, 60, 80, 100, 130, 160, 200, 250, 300, 400, 600, 1000]) {
        const id = `c${ms}`;
        await run(['containers', 'create', busyboxRef, id, 'sleep', '600'], ns);
        const rootfs = await new Promise<Mount[]>((resolve, reject) =>
          snapshots.mounts({ snapshotter: 'overlayfs', key: id }, md(ns), (e, r) =>
            e ? reject(e) : resolve(r?.mounts ?? []),
          ),
        );
        const outcome = await new Promise<grpc.ServiceError | null>((resolve) =>
          tasks.create(
            { containerId: id, rootfs, stdin: '', stdout: '', stderr: '', terminal: false, runtimePath: '' },
            md(ns),
            { deadline: Date.now() + ms },
            (e) => resolve(e),
          ),
        );
        const bundle = join(d.dir, 'state', 'tasks', ns, id);
        const runcState = join(d.dir, 'state', 'runc', ns, id);
        // A deadline that passes as the server answers: the client sees DEADLINE_EXCEEDED although the server
        // finished the create before its own timer fired. That is a task like any other (the same on
        // containerd); every other abandoned create must leave nothing behind.
        const listed = async (): Promise<boolean> => tableRows(await run(['tasks', 'ls'], ns)).some((r) => r[0] === id);
        let finishedAnyway = false;
        for (let t0 = Date.now(); outcome !== null && Date.now() - t0 < 2_000; ) {
          if (await listed()) finishedAnyway = true;
          if (finishedAnyway || (!existsSync(runcState) && !existsSync(bundle))) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        if (outcome && !finishedAnyway) {
          expect(outcome.code).toBe(grpc.status.DEADLINE_EXCEEDED);
          cancelled++;
          // Whatever Create had done is undone: at once, except that a `runc create` already running is let
          // finish (interrupting it could leave a half-made container) and then rolled back.
          const abandonedAt = Date.now();
          const gone = await within(5_000, () => !existsSync(runcState) && !existsSync(bundle));
          expect(gone, `task ${id} left after its Create was abandoned`).toBe(true);
          slowest = Math.max(slowest, Date.now() - abandonedAt);
          expect(mountsUnder(bundle)).toEqual([]);
          // And it is not a task either (a moment later still: nothing finishes the abandoned create).
          await new Promise((r) => setTimeout(r, 300));
          expect(tableRows(await run(['tasks', 'ls'], ns)).map((r) => r[0])).not.toContain(id);
          expect(existsSync(runcState)).toBe(false);
        } else {
          await run(['tasks', 'rm', '-f', id], ns);
        }
        await run(['containers', 'rm', id], ns);
      }
    } finally {
      tasks.close();
      snapshots.close();
    }
    console.log(`Tasks.Create: ${cancelled} of 14 calls ran past their deadline; rolled back within ${slowest} ms`);
    expect(cancelled).toBeGreaterThan(0);
  });
});
