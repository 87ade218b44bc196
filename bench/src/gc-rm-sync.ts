/**
 * `ctr images rm --sync` of the many-files image, side by side with containerd on this machine: each run pulls
 * the image into a fresh daemon, then times only the sync remove (the metadata sweep plus freeing content and
 * snapshot directories), and checks the space was freed. Runs alternate between the daemons.
 *
 *   pnpm --filter @berth/bench gc-rm [--runs 3] [--systems containerd,berthd] [--image many|busybox]
 */
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';
import { parseArgs, promisify } from 'node:util';
import { startBerthd } from '@berth/e2e/berthd';
import { startContainerd } from '@berth/testing/containerd';
import { busyboxImage, manyFilesImage, pushImage } from '@berth/testing/images';
import { startRegistry } from '@berth/testing/registry';

const exec = promisify(execFile);
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    systems: { type: 'string', default: 'containerd,berthd' },
    image: { type: 'string', default: 'many' },
  },
});
const runs = Number(values.runs);

async function timeRemove(system: string, ref: string): Promise<number> {
  const daemon = system === 'containerd' ? await startContainerd() : await startBerthd();
  const ctr = (args: string[]) => exec('ctr', ['--address', daemon.socket, ...args], { maxBuffer: 64 * 1024 * 1024 });
  try {
    await ctr(['images', 'pull', '--plain-http', ref]);
    const t = process.hrtime.bigint();
    await ctr(['images', 'rm', '--sync', ref]);
    const seconds = Number(process.hrtime.bigint() - t) / 1e9;
    const left = (await ctr(['snapshots', 'ls'])).stdout.trim().split('\n').length - 1;
    const blobs = (await ctr(['content', 'ls'])).stdout.trim().split('\n').length - 1;
    if (left !== 0 || blobs !== 0)
      throw new Error(`${system}: ${left} snapshots and ${blobs} blobs left after rm --sync`);
    return seconds;
  } finally {
    await daemon.stop();
  }
}

const registry = await startRegistry();
try {
  const image = values.image === 'busybox' ? await busyboxImage() : await manyFilesImage();
  const ref = await pushImage(registry, `bench/gc-${values.image}`, 'latest', image);
  console.log(`${values.image}: ${image.layers.length} layers, ${image.stats.entries} entries`);
  const systems = values.systems.split(',');
  const times: Record<string, number[]> = Object.fromEntries(systems.map((s) => [s, []]));
  // Alternating, so background load hits both alike.
  for (let i = 0; i < runs; i++) {
    for (const system of i % 2 === 0 ? systems : [...systems].reverse())
      times[system]?.push(await timeRemove(system, ref));
  }
  const medians: Record<string, number> = {};
  for (const system of systems) {
    const samples = times[system] ?? [];
    const sorted = [...samples].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    medians[system] = median;
    console.log(
      `  ${system.padEnd(11)} rm --sync median ${median.toFixed(3)} s  (runs: ${samples.map((x) => x.toFixed(3)).join(', ')})`,
    );
  }
  console.log(
    `  load average ${loadavg()
      .map((n) => n.toFixed(2))
      .join(' ')}`,
  );
  if (medians['containerd'] && medians['berthd'])
    console.log(`  berthd / containerd: ${(medians['berthd'] / medians['containerd']).toFixed(2)}x`);
} finally {
  await registry.stop();
}
