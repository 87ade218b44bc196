/**
 * Where node B's `ctr run --rm` of an image pulled on node A spends its time (the cluster bench, one round):
 * every process of the cluster writes its gRPC spans (BERTH_TRACE_FILE); after the run this prints node B's
 * spans, server side (what ctr called) and client side (what B called: the content replicas, metadata), on a
 * time line from the start of `ctr run`, and the content replicas' reads.
 *
 *   pnpm --filter @berth/bench cluster-profile [--image many|busybox] [--runs 2]
 *
 * BERTH_CPU_PROF=<dir> writes a V8 CPU profile of every berthd process there (node --cpu-prof) instead.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    image: { type: 'string', default: 'many' },
    runs: { type: 'string', default: '2' },
    /** Only the floor: what gzip, sha256sum and GNU tar alone take to unpack the image's layers. */
    floor: { type: 'boolean', default: false },
  },
});
const traceDir = await mkdtemp(join(tmpdir(), 'berth-profile-'));
const traceFile = join(traceDir, 'spans.jsonl');
const cpuProf = process.env['BERTH_CPU_PROF'];
// Tracing's async hooks would show in a CPU profile: one or the other.
if (!cpuProf) process.env['BERTH_TRACE_FILE'] = traceFile;
// Imported after the environment is set: the cluster's processes inherit it.
const { startCluster } = await import('@berth/e2e/cluster');
const { busyboxImage, busyboxLayer, manyFilesImage, pushImage } = await import('@berth/testing/images');
const { startRegistry } = await import('@berth/testing/registry');

function ctr(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('ctr', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`ctr ${args.join(' ')}: ${err}`))));
  });
}

interface Span {
  name: string;
  kind: number;
  service: string;
  startMs: number;
  durationMs: number;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
}

async function spans(): Promise<Span[]> {
  const text = await readFile(traceFile, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Span);
}

if (values.floor) {
  const { spawnSync } = await import('node:child_process');
  const { writeFile } = await import('node:fs/promises');
  const image = values.image === 'busybox' ? await busyboxImage() : await manyFilesImage({ base: busyboxLayer() });
  const dir = await mkdtemp(join(tmpdir(), 'berth-floor-'));
  try {
    const files: string[] = [];
    for (const [i, l] of image.layers.entries()) {
      files.push(join(dir, `layer-${i}.tgz`));
      await writeFile(join(dir, `layer-${i}.tgz`), l.data);
    }
    // Each layer: hash the blob, decompress, hash the tar (diffID), extract. One after another (as containerd's
    // unpack), then all at once (the most unpack-ahead could overlap).
    for (const mode of ['sequential', 'parallel'] as const) {
      const steps = files.map((f, i) => {
        const to = join(dir, `${mode}-${i}`);
        return `(sha256sum ${f} >/dev/null; mkdir ${to}; gzip -dc ${f} | tee >(sha256sum >/dev/null) | tar -x --numeric-owner -C ${to})`;
      });
      const script = mode === 'sequential' ? steps.join('; ') : `${steps.join(' & ')} & wait`;
      spawnSync('sync');
      const r = spawnSync('bash', ['-c', `TIMEFORMAT='%R %U %S'; time { ${script}; }`], { encoding: 'utf8' });
      const [real, user, sys] = r.stderr.trim().split('\n').at(-1)?.split(' ').map(Number) ?? [];
      console.log(
        `floor, ${mode}: ${real?.toFixed(2)} s wall, cpu ${((user ?? 0) + (sys ?? 0)).toFixed(2)} s ` +
          `(user ${user?.toFixed(2)}, sys ${sys?.toFixed(2)}); load average ${loadavg()[0]?.toFixed(2)}`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
const registry = await startRegistry();
const cluster = await startCluster({
  nodes: ['a', 'b'],
  replicas: 2,
  ...(cpuProf ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${cpuProf}`] } : {}),
});
try {
  const image = values.image === 'busybox' ? await busyboxImage() : await manyFilesImage({ base: busyboxLayer() });
  const ref = await pushImage(registry, `bench/${values.image}`, 'latest', image);
  for (let round = 0; round < Number(values.runs); round++) {
    const ns = `profile-${round}`;
    await ctr(['--address', cluster.socket('a'), '--namespace', ns, 'images', 'pull', '--plain-http', ref]);
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    await ctr(['--address', cluster.socket('b'), '--namespace', ns, 'run', '--rm', ref, `p${round}`, '/bin/true']);
    const t1 = Date.now();
    // Spans are written as they end; give the last ones a moment.
    await new Promise((r) => setTimeout(r, 300));
    const during = (await spans()).filter((s) => s.startMs >= t0 - 5 && s.startMs <= t1);
    console.log(`\nround ${round + 1}: ctr run on B ${t1 - t0} ms; load average ${loadavg()[0]?.toFixed(2)}`);
    const rel = (ms: number): string => (ms - t0).toFixed(0).padStart(6);
    for (const s of during.sort((x, y) => x.startMs - y.startMs)) {
      const side = s.kind === 1 ? 'server' : s.kind === 2 ? 'client' : String(s.kind);
      console.log(
        `${rel(s.startMs)} ${rel(s.startMs + s.durationMs)} ${s.durationMs.toFixed(1).padStart(8)} ms  ` +
          `${s.service.padEnd(22)} ${side} ${s.name}`,
      );
    }
  }
} finally {
  await cluster.stop();
  await registry.stop();
  if (!cpuProf) await rm(traceDir, { recursive: true, force: true });
}
