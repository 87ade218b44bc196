/**
 * Running on one node an image pulled on another, side by side with containerd on this machine:
 *   - berth cluster: `ctr run --rm IMAGE id /bin/true` on node B of an image `ctr images pull`ed on node A
 *     (B unpacks it from the shared S3 content store: no registry traffic), in a cluster started as in
 *     test/e2e/cluster.test.ts (two replicas each of content and metadata, events, nodes a and b);
 *   - containerd: `ctr images pull` + `ctr run --rm` on a fresh private containerd (what a second node without
 *     a shared store has to do).
 * And how long after the pull on A returns the image is listed on B (polled through B's socket).
 * Each round uses a new namespace on the cluster (so B has nothing unpacked; blobs are shared across
 * namespaces, so A's pull fetches nothing either) and a new containerd; rounds alternate between the two.
 *
 *   pnpm --filter @berth/bench cluster [--image many|busybox] [--runs 3]
 *
 * many = busybox plus ~100 MiB in 20 000 files over 5 gzip layers.
 */
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { channelOptions, dialTarget, invoke } from '@berth/common/grpc-client';
import { type Cluster, startCluster } from '@berth/e2e/cluster';
import { ImagesClient } from '@berth/proto/containerd/services/images/v1/images';
import { startContainerd } from '@berth/testing/containerd';
import { type BuiltImage, busyboxImage, busyboxLayer, manyFilesImage, pushImage } from '@berth/testing/images';
import { descendants } from '@berth/testing/proc';
import { startRegistry } from '@berth/testing/registry';
import * as grpc from '@grpc/grpc-js';
import { cpuOfMs } from './proc.js';
import { percentile } from './stats.js';

const { values } = parseArgs({
  options: { image: { type: 'string', default: 'many' }, runs: { type: 'string', default: '3' } },
});
const runs = Number(values.runs);

function sh(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ctr', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    // A stuck command fails the bench (with the nodes' logs) rather than hanging it.
    const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`ctr ${args.join(' ')} exited ${code}: ${out.slice(-2000)}`));
    });
  });
}

async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/**
 * `fn`'s wall time and the CPU time (user + system, seconds) `pids` and this process spent during it. This
 * process counts the ctr it waits for (both sides) and, on Berth's side, the S3 server it runs (s3rver); a
 * process counts the children it waited for (tar, runc). Other processes of the machine are not counted.
 */
async function timed(
  groups: Readonly<Record<string, readonly (number | undefined)[]>>,
  fn: () => Promise<unknown>,
): Promise<Timing> {
  const all = { bench: [process.pid], ...groups };
  const sample = async (): Promise<Array<[string, number]>> =>
    Promise.all(Object.entries(all).map(async ([k, pids]) => [k, await cpuOfMs(pids)] as [string, number]));
  const before = new Map(await sample());
  const wall = await seconds(fn);
  const parts = (await sample()).map(([k, ms]) => [k, (ms - (before.get(k) ?? 0)) / 1000] as [string, number]);
  return { wall, cpu: parts.reduce((s, [, c]) => s + c, 0), parts };
}

interface Timing {
  readonly wall: number;
  /** CPU seconds of every process counted, and (`parts`) per group of processes. */
  readonly cpu: number;
  readonly parts: ReadonlyArray<readonly [string, number]>;
}

const cpuParts = (t: Timing): string => t.parts.map(([k, c]) => `${k} ${c.toFixed(2)}`).join(', ');

/** Pull on A (untimed); poll B until it lists the image; then `ctr run --rm` on B (timed). */
async function clusterRound(
  cluster: Cluster,
  ref: string,
  round: number,
  fetches: () => Promise<number>,
): Promise<{ run: Timing; listedMs: number }> {
  const ns = `bench-cluster-${round}`;
  const a = cluster.socket('a');
  const b = cluster.socket('b');
  await sh(['--address', a, '--namespace', ns, 'images', 'pull', '--plain-http', ref]);
  const pulled = process.hrtime.bigint();
  const images = new ImagesClient(dialTarget(b), grpc.credentials.createInsecure(), channelOptions);
  const signal = new AbortController().signal;
  try {
    for (;;) {
      const listed = await invoke<{ image?: unknown }>((md, o, cb) => images.get({ name: ref }, md, o, cb), {
        namespace: ns,
        lease: undefined,
        signal,
      }).catch(() => undefined);
      if (listed?.image) break;
      if (Number(process.hrtime.bigint() - pulled) > 10e9) throw new Error('image not listed on B within 10 s');
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    images.close();
  }
  const listedMs = Number(process.hrtime.bigint() - pulled) / 1e6;
  const before = await fetches();
  // Every process of the cluster (node a and the collectors idle meanwhile).
  const pids = (names: (n: string) => boolean, from: ReadonlyMap<string, { child: { pid?: number } }>) =>
    [...from].filter(([n]) => names(n)).map(([, p]) => p.child.pid);
  const groups = {
    'node b': pids((n) => n === 'b', cluster.nodes),
    content: pids((n) => n.startsWith('content'), cluster.replicas),
    others: [...pids((n) => n !== 'b', cluster.nodes), ...pids((n) => !n.startsWith('content'), cluster.replicas)],
  };
  const run = await timed(groups, () =>
    sh(['--address', b, '--namespace', ns, 'run', '--rm', ref, `r${round}`, '/bin/true']),
  );
  const fetched = (await fetches()) - before;
  if (fetched !== 0) throw new Error(`run on B fetched ${fetched} blobs from the registry`);
  return { run, listedMs };
}

async function containerdRound(ref: string, round: number): Promise<Timing> {
  const d = await startContainerd();
  // containerd and the registry it pulls from (the shim, not a child containerd waits for, is not counted).
  const registryPids = descendants(process.pid, ['registry', 'docker-registry']).map((p) => p.pid);
  try {
    return await timed({ containerd: [d.pid], registry: registryPids }, async () => {
      await sh(['--address', d.socket, '--namespace', 'bench', 'images', 'pull', '--plain-http', ref]);
      await sh(['--address', d.socket, '--namespace', 'bench', 'run', '--rm', ref, `c${round}`, '/bin/true']);
    });
  } finally {
    await d.stop();
  }
}

const median = (xs: readonly number[]): number =>
  percentile(
    [...xs].sort((x, y) => x - y),
    50,
  );

const registry = await startRegistry({ accessLog: true });
const cluster = await startCluster({ nodes: ['a', 'b'], replicas: 2 });
try {
  const t0 = Date.now();
  const image: BuiltImage =
    values.image === 'busybox' ? await busyboxImage() : await manyFilesImage({ base: busyboxLayer() });
  const ref = await pushImage(registry, `bench/${values.image}`, 'latest', image);
  const compressed = image.layers.reduce((s, l) => s + l.size, 0);
  console.log(
    `${values.image}: ${image.layers.length} layers, ${image.stats.entries} entries, ` +
      `${(image.stats.fileBytes / 2 ** 20).toFixed(1)} MiB of files, ${(compressed / 2 ** 20).toFixed(1)} MiB compressed ` +
      `(built and pushed in ${((Date.now() - t0) / 1000).toFixed(1)} s); load average ${loadavg()[0]?.toFixed(2)}`,
  );
  const fetches = async (): Promise<number> => [...(await registry.blobFetches()).values()].reduce((s, n) => s + n, 0);
  const berth: Timing[] = [];
  const listed: number[] = [];
  const containerd: Timing[] = [];
  for (let i = 0; i < runs; i++) {
    const c = await containerdRound(ref, i);
    containerd.push(c);
    const r = await clusterRound(cluster, ref, i, fetches);
    berth.push(r.run);
    listed.push(r.listedMs);
    console.log(
      `  round ${i + 1}: containerd pull+run ${c.wall.toFixed(2)} s (cpu ${c.cpu.toFixed(2)} s: ${cpuParts(c)}), ` +
        `berth run on B ${r.run.wall.toFixed(2)} s (cpu ${r.run.cpu.toFixed(2)} s: ${cpuParts(r.run)}), ` +
        `listed on B ${r.listedMs.toFixed(1)} ms after the pull on A returned; load average ${loadavg()[0]?.toFixed(2)}`,
    );
  }
  const wall = (ts: readonly Timing[]): number => median(ts.map((t) => t.wall));
  const cpu = (ts: readonly Timing[]): number => median(ts.map((t) => t.cpu));
  const ratio = wall(berth) / wall(containerd);
  console.log(
    `\nmedian of ${runs}: containerd pull + run --rm ${wall(containerd).toFixed(2)} s (cpu ${cpu(containerd).toFixed(2)} s); ` +
      `berth run --rm on B of an image pulled on A ${wall(berth).toFixed(2)} s (cpu ${cpu(berth).toFixed(2)} s) ` +
      `(${ratio.toFixed(2)}x, goal <= 0.5x); listed on B ${median(listed).toFixed(1)} ms after A's pull (goal < 1 s)`,
  );
} catch (e) {
  for (const [name, node] of cluster.nodes) console.error(`--- node ${name} log tail:\n${node.logs().slice(-4000)}`);
  throw e;
} finally {
  await cluster.stop();
  await registry.stop();
}
