/**
 * Image records at scale, Berth beside containerd on the same machine: both get the same N image records
 * (created through the Images API with our TypeScript client), all pointing at one small real image whose
 * blobs were ingested with `ctr content ingest`, so `ctr images ls` walks index → manifest → config in
 * Content for every record on both. Then, for each daemon, the median of several runs of:
 *   - `ctr images ls` (Images.List + Content reads per image), `ctr images ls -q` (Images.List only),
 *   - `ctr images ls -q labels.group==3` (a filtered List through ctr),
 *   - a filtered Images.List through the gRPC client (`name==…` and `labels.group==3`).
 *
 *   node bench/dist/metadata-images.js [--images 10000] [--runs 5] [--postgres postgres://…] [--skip-full-ls]
 *
 * containerd 1.6 runs privately: root, state and sockets in a temp dir, CRI disabled.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startBerthd } from '@berth/e2e/berthd';
import { ctr } from '@berth/e2e/ctr';
import { ImagesClient } from '@berth/proto/containerd/services/images/v1/images';
import { ociIndexType, tinyImage } from '@berth/testing/tiny-image';
import * as grpc from '@grpc/grpc-js';
import { summarize } from './stats.js';

const { values } = parseArgs({
  options: {
    images: { type: 'string' },
    runs: { type: 'string' },
    postgres: { type: 'string' },
    // `ctr images ls` with content reads takes minutes at 10,000 images; skip it to time the List paths only.
    'skip-full-ls': { type: 'boolean' },
  },
});
const count = Number(values.images ?? 10_000);
const runs = Number(values.runs ?? 5);

const indexType = ociIndexType;

interface Daemon {
  readonly label: string;
  readonly socket: string;
  stop(): Promise<void>;
}

async function startContainerd(): Promise<Daemon> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-bench-containerd-'));
  const socket = join(dir, 'containerd.sock');
  const config = `version = 2
root = "${join(dir, 'root')}"
state = "${join(dir, 'state')}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "${socket}"
[ttrpc]
  address = "${socket}.ttrpc"
[debug]
  level = "warn"
`;
  await writeFile(join(dir, 'config.toml'), config);
  const child: ChildProcess = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: 'ignore' });
  const deadline = Date.now() + 30_000;
  while (!existsSync(socket)) {
    if (child.exitCode !== null) throw new Error(`containerd exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error('containerd did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  const version = spawnSync('containerd', ['--version'], { encoding: 'utf8' }).stdout.trim();
  return {
    label: `containerd (${version.split(' ')[2] ?? '?'})`,
    socket,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function startBerth(): Promise<Daemon> {
  const args = values.postgres ? ['--postgres', values.postgres] : [];
  const d = await startBerthd({ args, config: { 'log-level': 'warn' } });
  return {
    label: `berthd (${values.postgres ? 'PostgreSQL' : 'PGlite'})`,
    socket: d.socket,
    stop: async () => void (await d.stop()),
  };
}

function client(socket: string): { images: ImagesClient; md: grpc.Metadata } {
  const md = new grpc.Metadata();
  md.set('containerd-namespace', 'bench');
  return {
    images: new ImagesClient(`unix://${socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 << 20,
    }),
    md,
  };
}

async function populate(
  d: Daemon,
  index: { digest: string; size: number },
  blobs: ReadonlyArray<readonly [string, Buffer]>,
): Promise<number> {
  for (const [ref, blob] of blobs) {
    const r = await ctr(d.socket, ['--namespace', 'bench', 'content', 'ingest', ref], { input: blob });
    if (r.code !== 0) throw new Error(`${d.label}: content ingest ${ref}: ${r.stderr}`);
  }
  const { images, md } = client(d.socket);
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < count) {
        const i = next++;
        await new Promise<void>((resolve, reject) =>
          images.create(
            {
              image: {
                name: `registry.test/bench/app${String(i).padStart(5, '0')}:v1`,
                labels: { group: String(i % 10), i: String(i) },
                target: { mediaType: indexType, digest: index.digest, size: index.size, annotations: {} },
              },
            },
            md,
            (e) => (e ? reject(e) : resolve()),
          ),
        );
      }
    }),
  );
  images.close();
  return Date.now() - started;
}

/** Median of `runs` timed runs after one untimed warm-up run (as timeList does; berthd's JIT warms up too). */
async function timeCtr(d: Daemon, args: readonly string[], expectLines: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const t = process.hrtime.bigint();
    const r = await ctr(d.socket, ['--namespace', 'bench', ...args], { timeoutMs: 600_000 });
    if (i > 0) samples.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (r.code !== 0) throw new Error(`${d.label}: ctr ${args.join(' ')}: ${r.stderr.slice(0, 500)}`);
    const lines = r.stdout.trim().split('\n').length;
    if (lines !== expectLines)
      throw new Error(`${d.label}: ctr ${args.join(' ')} printed ${lines} lines, expected ${expectLines}`);
  }
  return summarize(samples).p50;
}

async function timeList(d: Daemon, filters: string[], expect: number): Promise<number> {
  const { images, md } = client(d.socket);
  const list = (): Promise<number> =>
    new Promise((resolve, reject) =>
      images.list({ filters }, md, (e, r) => (e ? reject(e) : resolve(r.images.length))),
    );
  await list();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    const n = await list();
    samples.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (n !== expect) throw new Error(`${d.label}: List ${filters.join(' ')} returned ${n}, expected ${expect}`);
  }
  images.close();
  return summarize(samples).p50;
}

const { blobs, index } = tinyImage(Buffer.from('bench layer bytes'));
const rows: Array<Record<string, string>> = [];
for (const start of [startContainerd, startBerth]) {
  const d = await start();
  try {
    const createMs = await populate(d, index, blobs);
    const group = Math.ceil(count / 10);
    rows.push({
      daemon: d.label,
      [`create ${count}`]: `${(createMs / 1000).toFixed(1)} s`,
      'ctr images ls': values['skip-full-ls']
        ? 'skipped'
        : `${(await timeCtr(d, ['images', 'ls'], count + 1)).toFixed(0)} ms`,
      'ctr images ls -q': `${(await timeCtr(d, ['images', 'ls', '-q'], count)).toFixed(0)} ms`,
      'ctr ls -q labels.group==3': `${(await timeCtr(d, ['images', 'ls', '-q', 'labels.group==3'], group)).toFixed(0)} ms`,
      'List name==…': `${(await timeList(d, ['name==registry.test/bench/app00042:v1'], 1)).toFixed(1)} ms`,
      'List labels.group==3': `${(await timeList(d, ['labels.group==3'], group)).toFixed(1)} ms`,
    });
    console.log(JSON.stringify(rows.at(-1)));
  } finally {
    await d.stop();
  }
}
console.table(rows);
