/**
 * Pull + unpack, as a user runs it and as `../shared/bench/ab.sh` measures it: the real
 * `ctr images pull --plain-http REF` against berthd (all-in-one, embedded defaults) and against a private
 * containerd 1.6, both running for the whole benchmark, from one local docker-registry holding the shared
 * harness's three images (bench/images/images.sh, a copy of ../shared/bench/images.sh: busybox, many-files,
 * big-blob). Each repetition times both daemons back to back, the order alternating, and before each pull
 * wipes the namespace the way ab.sh does (tasks, containers, `images rm --sync`, snapshots, content) and
 * runs `sync`, so every pull downloads and unpacks everything and starts with no dirty pages of the last.
 * Reports medians with every sample, and the machine's load. See bench/README.md for what the previous
 * version of this benchmark measured instead.
 *
 *   pnpm --filter @berth/bench pull [--images busybox,many-files,big-blob] [--reps 5] [--berth-cli]
 *
 * --berth-cli adds a third row: the same pull with Berth's own client (`berth pull`) against berthd.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startBerthd } from '@berth/e2e/berthd';
import { startContainerd } from '@berth/testing/containerd';
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

const load = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

const work = await mkdtemp(join(tmpdir(), 'berth-bench-pull-'));
const registry = await startRegistry();
const berthd = await startBerthd();
const containerd = await startContainerd();
try {
  const t0 = Date.now();
  const built = await sh('bash', [imagesScript, join(work, 'images')], {
    ...process.env,
    REGISTRY_ADDR: registry.host,
    IMAGES: images.join(' '),
  });
  if (built.code !== 0) throw new Error(`images.sh failed:\n${built.out}`);
  console.log(
    `images built and pushed to ${registry.host} in ${((Date.now() - t0) / 1000).toFixed(1)} s; ` +
      `${cpus().length} CPUs, load average ${load()} (other work on this machine makes times noisy: compare the ratio)`,
  );
  type Side = { name: string; pull: (ref: string) => Promise<{ code: number | null; out: string }>; socket: string };
  const sides: Side[] = [
    {
      name: 'containerd',
      socket: containerd.socket,
      pull: (ref) => ctr(containerd.socket, 'images', 'pull', '--plain-http', ref),
    },
    { name: 'berthd', socket: berthd.socket, pull: (ref) => ctr(berthd.socket, 'images', 'pull', '--plain-http', ref) },
  ];
  if (values['berth-cli']) {
    sides.push({
      name: 'berthd (berth pull)',
      socket: berthd.socket,
      pull: (ref) =>
        sh(process.execPath, [
          berthCli,
          '--address',
          berthd.socket,
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
  const report: Record<string, Record<string, { median: number; samples: number[] }>> = {};
  for (const image of images) {
    const ref = `${registry.host}/bench/${image}:latest`;
    const samples: Record<string, number[]> = Object.fromEntries(sides.map((s) => [s.name, []]));
    for (let rep = 0; rep < reps; rep++) {
      const order = rep % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        await wipe(side.socket);
        await sh('sync', []);
        const t = process.hrtime.bigint();
        const r = await side.pull(ref);
        const ms = Number(process.hrtime.bigint() - t) / 1e6;
        if (r.code !== 0) throw new Error(`${side.name}: pull of ${ref} failed:\n${r.out}`);
        // The pull must have unpacked the image, or the time means nothing.
        const snaps = lines((await ctr(side.socket, 'snapshots', 'ls')).out).length - 1;
        if (snaps < 1) throw new Error(`${side.name}: no snapshot after pulling ${ref}`);
        samples[side.name]?.push(ms);
      }
    }
    report[image] = Object.fromEntries(
      Object.entries(samples).map(([name, s]) => [name, { median: median(s), samples: s.map(Math.round) }]),
    );
    const base = median(samples.containerd ?? []);
    console.log(`\nctr images pull --plain-http ${ref}  (${reps} repetitions, alternating; load average ${load()})`);
    for (const [name, s] of Object.entries(samples)) {
      const m = median(s);
      console.log(
        `  ${name.padEnd(20)} median ${m.toFixed(0).padStart(6)} ms  ${(m / base).toFixed(2)}× containerd   samples ${s.map((x) => x.toFixed(0)).join(', ')}`,
      );
    }
  }
  console.log(`\n${JSON.stringify(report)}`);
} finally {
  for (const s of [berthd.socket, containerd.socket]) await wipe(s).catch(() => undefined);
  await berthd.stop();
  await containerd.stop();
  await registry.stop();
  await rm(work, { recursive: true, force: true });
}
