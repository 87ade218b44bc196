/**
 * Pull + unpack, as a user runs it and as `../shared/bench/ab.sh` measures it: the real
 * `ctr images pull --plain-http REF` against berthd (all-in-one, embedded defaults) and against a private
 * containerd 1.6, both running for the whole benchmark, from one local docker-registry holding the shared
 * harness's three images (bench/images/images.sh, a copy of ../shared/bench/images.sh: busybox, many-files,
 * big-blob). Set up as bench/ab/run-ab.sh and ab.sh do: registry (blob descriptors cached in memory), images,
 * berthd (root and state beside them, log level warn), then containerd (log level warn). Each repetition
 * times both daemons back to back, berthd first in the first repetition, then alternating, and before each
 * pull wipes the namespace the way ab.sh does (tasks, containers, `images rm --sync`, snapshots, content) and
 * runs `sync`, so every pull downloads and unpacks everything and starts with no dirty pages of the last.
 * Reports medians with every sample, each daemon's kernel and user CPU per pull, the file system everything
 * lives on (TMPDIR), and the machine's load.
 *
 * On an ext4 without a journal (this VM's root file system) the many-files times are dominated by ext4's
 * skipping of recently freed inodes, and swing with whatever was deleted in the last minute: see
 * bench/README.md, and run with TMPDIR on a journaled file system for figures of the daemons themselves.
 *
 *   pnpm --filter @berth/bench pull [--images busybox,many-files,big-blob] [--reps 5] [--berth-cli]
 *
 * --berth-cli adds a third row: the same pull with Berth's own client (`berth pull`) against berthd.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type BerthdProcess, startBerthd } from '@berth/e2e/berthd';
import { type ContainerdProcess, startContainerd } from '@berth/testing/containerd';
import { startRegistry } from '@berth/testing/registry';

const here = fileURLToPath(new URL('.', import.meta.url));
const imagesScript = join(here, '../images/images.sh');
const berthCli = join(here, '../../apps/berth/dist/main.js');

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: 'busybox,many-files,big-blob' },
    reps: { type: 'string', default: '5' },
    'berth-cli': { type: 'boolean', default: false },
  },
});
const reps = Number(values.reps);
const images = values.images.split(',');
const NS = 'bench-pull';

function sh(
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('close', (code) => resolve({ code, out }));
  });
}

const lines = (text: string): string[] => text.split('\n').filter((l) => l.trim() !== '');
const ctr = (socket: string, ...args: string[]) => sh('ctr', ['--address', socket, '--namespace', NS, ...args]);

/** ab.sh's wipe: nothing of the namespace is left, content included, so the next pull starts from nothing. */
async function wipe(socket: string): Promise<void> {
  for (const id of lines((await ctr(socket, 'tasks', 'ls', '-q')).out))
    await ctr(socket, 'tasks', 'kill', '-s', 'SIGKILL', id);
  for (const id of lines((await ctr(socket, 'tasks', 'ls', '-q')).out)) await ctr(socket, 'tasks', 'rm', '-f', id);
  for (const id of lines((await ctr(socket, 'containers', 'ls', '-q')).out)) await ctr(socket, 'containers', 'rm', id);
  const refs = lines((await ctr(socket, 'images', 'ls', '-q')).out);
  if (refs.length > 0) await ctr(socket, 'images', 'rm', '--sync', ...refs);
  for (let i = 0; i < 8; i++) {
    const keys = lines((await ctr(socket, 'snapshots', 'ls')).out)
      .slice(1)
      .map((l) => l.split(/\s+/)[0] ?? '');
    if (keys.length === 0) break;
    for (const k of keys) await ctr(socket, 'snapshots', 'rm', k);
  }
  for (const d of lines((await ctr(socket, 'content', 'ls', '-q')).out)) await ctr(socket, 'content', 'rm', d);
  const left = lines((await ctr(socket, 'content', 'ls', '-q')).out).length;
  if (left > 0) throw new Error(`wipe left ${left} blobs on ${socket}`);
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] ?? Number.NaN) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
}

/**
 * CPU seconds a daemon and its reaped children (berthd's tar and decompressors) have used, user and kernel
 * (/proc/<pid>/stat utime+cutime, stime+cstime; clock ticks of 10 ms).
 */
async function cpuOf(pid: number | undefined): Promise<{ user: number; sys: number }> {
  if (pid === undefined) return { user: Number.NaN, sys: Number.NaN };
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  // Fields 14–17 of proc(5) (utime, stime, cutime, cstime) are 11–14 here, counting from field 3 (state) as 0.
  return { user: ((f[11] ?? 0) + (f[13] ?? 0)) / 100, sys: ((f[12] ?? 0) + (f[14] ?? 0)) / 100 };
}

/**
 * The file system a directory lives on, and for ext4 whether it has a journal. Without one, ext4 does not reuse
 * an inode freed in the last 60 s (5 min while its inode table block is dirty) and skips each such inode one by
 * one on every allocation (fs/ext4/ialloc.c, recently_deleted()): unpacking many files right after a wipe
 * removed many costs seconds of kernel time, more or less depending on what was deleted nearby in the last
 * minute, by either daemon or anything else on the machine (bench/README.md).
 */
async function fileSystemOf(dir: string): Promise<string> {
  const path = await realpath(dir);
  let best: { point: string; type: string; source: string } | undefined;
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const [left, right] = line.split(' - ');
    const point = left?.split(' ')[4]?.replace(/\\040/g, ' ');
    const [type, source] = right?.split(' ') ?? [];
    if (!point || !type || !source) continue;
    const under = path === point || path.startsWith(point === '/' ? '/' : `${point}/`);
    if (under && point.length >= (best?.point.length ?? 0)) best = { point, type, source };
  }
  if (!best) return 'an unknown file system';
  let journal = '';
  if (best.type === 'ext4') {
    const task = await readFile(`/sys/fs/ext4/${basename(best.source)}/journal_task`, 'utf8').catch(() => undefined);
    if (task !== undefined) journal = task.trim() === '<none>' ? ' WITHOUT a journal' : ' with a journal';
  }
  return `${best.type} (${best.source} on ${best.point})${journal}`;
}

const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

// The order of ab.sh's setup (bench/ab/run-ab.sh, then ab.sh): registry, images, berthd, containerd. Where
// directories are created, and what was deleted shortly before, decides how much the first pulls pay for
// ext4's skipping of recently deleted inodes (bench/README.md).
const work = await mkdtemp(join(tmpdir(), 'berth-bench-pull-'));
const registry = await startRegistry({ blobDescriptorCache: true });
let berthd: BerthdProcess | undefined;
let containerd: ContainerdProcess | undefined;
try {
  const t0 = Date.now();
  const built = await sh('bash', [imagesScript, join(work, 'images')], {
    ...process.env,
    REGISTRY_ADDR: registry.host,
    IMAGES: images.join(' '),
  });
  if (built.code !== 0) throw new Error(`images.sh failed:\n${built.out}`);
  const builtIn = ((Date.now() - t0) / 1000).toFixed(1);
  // As run-ab.sh starts it: root and state beside the registry and images, log level warn.
  const bd = await startBerthd({ dir: work, args: ['--log-level', 'warn'] });
  berthd = bd;
  const cd = await startContainerd({ logLevel: 'warn' });
  containerd = cd;
  console.log(
    `daemons' roots, registry and images under ${tmpdir()}: ${await fileSystemOf(tmpdir())}; ` +
      `images built and pushed to ${registry.host} in ${builtIn} s; ` +
      `${cpus().length} CPUs, load average ${load()} (other work on this machine makes times noisy: compare the ratio)`,
  );
  type Side = {
    name: string;
    pull: (ref: string) => Promise<{ code: number | null; out: string }>;
    socket: string;
    pid: number | undefined;
  };
  const sides: Side[] = [
    {
      name: 'containerd',
      socket: cd.socket,
      pid: cd.pid,
      pull: (ref) => ctr(cd.socket, 'images', 'pull', '--plain-http', ref),
    },
    {
      name: 'berthd',
      socket: bd.socket,
      pid: bd.child.pid,
      pull: (ref) => ctr(bd.socket, 'images', 'pull', '--plain-http', ref),
    },
  ];
  if (values['berth-cli']) {
    sides.push({
      name: 'berthd (berth pull)',
      socket: bd.socket,
      pid: bd.child.pid,
      pull: (ref) =>
        sh(process.execPath, [
          berthCli,
          '--address',
          bd.socket,
          '--namespace',
          NS,
          'pull',
          '--plain-http',
          '--progress',
          'plain',
          ref,
        ]),
    });
  }
  type Figures = { median: number; samples: number[]; kernelCpu: number[]; userCpu: number[] };
  const report: Record<string, Record<string, Figures>> = {};
  for (const image of images) {
    const ref = `${registry.host}/bench/${image}:latest`;
    const samples: Record<string, number[]> = Object.fromEntries(sides.map((s) => [s.name, []]));
    const kernel: Record<string, number[]> = Object.fromEntries(sides.map((s) => [s.name, []]));
    const user: Record<string, number[]> = Object.fromEntries(sides.map((s) => [s.name, []]));
    for (let rep = 1; rep <= reps; rep++) {
      // ab.sh's order: its first repetition starts with the candidate (berthd), then alternates.
      const order = rep % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        await wipe(side.socket);
        await sh('sync', []);
        const c0 = await cpuOf(side.pid);
        const t = process.hrtime.bigint();
        const r = await side.pull(ref);
        const ms = Number(process.hrtime.bigint() - t) / 1e6;
        const c1 = await cpuOf(side.pid);
        if (r.code !== 0) throw new Error(`${side.name}: pull of ${ref} failed:\n${r.out}`);
        // The pull must have unpacked the image, or the time means nothing.
        const snaps = lines((await ctr(side.socket, 'snapshots', 'ls')).out).length - 1;
        if (snaps < 1) throw new Error(`${side.name}: no snapshot after pulling ${ref}`);
        samples[side.name]?.push(ms);
        kernel[side.name]?.push(c1.sys - c0.sys);
        user[side.name]?.push(c1.user - c0.user);
      }
    }
    report[image] = Object.fromEntries(
      Object.entries(samples).map(([name, s]) => [
        name,
        {
          median: median(s),
          samples: s.map(Math.round),
          kernelCpu: (kernel[name] ?? []).map((x) => Number(x.toFixed(2))),
          userCpu: (user[name] ?? []).map((x) => Number(x.toFixed(2))),
        },
      ]),
    );
    const base = median(samples.containerd ?? []);
    console.log(`\nctr images pull --plain-http ${ref}  (${reps} repetitions, alternating; load average ${load()})`);
    for (const [name, s] of Object.entries(samples)) {
      const m = median(s);
      console.log(
        `  ${name.padEnd(20)} median ${m.toFixed(0).padStart(6)} ms  ${(m / base).toFixed(2)}× containerd   samples ${s.map((x) => x.toFixed(0)).join(', ')}`,
      );
      console.log(
        `  ${''.padEnd(20)} daemon CPU per pull, kernel / user (s): ${s.map((_, i) => `${kernel[name]?.[i]?.toFixed(1)}/${user[name]?.[i]?.toFixed(1)}`).join(', ')}`,
      );
    }
  }
  console.log(`\n${JSON.stringify(report)}`);
} finally {
  for (const d of [berthd, containerd]) if (d) await wipe(d.socket).catch(() => undefined);
  await berthd?.stop();
  await containerd?.stop();
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}
