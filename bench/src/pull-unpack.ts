/**
 * Pull + unpack time, side by side with containerd on this machine, from a local docker-registry:
 *   - containerd:    `ctr images pull --plain-http` against a private real containerd
 *   - berthd (ctr):  the same ctr command against berthd (all-in-one)
 *   - berthd (berth): `berth pull --plain-http --progress plain` against berthd
 * Each run starts a fresh daemon (fresh root) so every pull is cold: content is shared across namespaces
 * in both systems, so a new namespace would not be. Only the pull command is timed.
 *
 *   pnpm --filter @berth/bench pull [--image many|busybox|large|all] [--runs 3] [--systems containerd,berthd-ctr,berthd-berth]
 *
 * Images: many = ~100 MiB, 20 000 files, 5 gzip layers; busybox; large = one 500 MiB (incompressible) file.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { startBerthd } from '@berth/e2e/berthd';
import { startContainerd } from '@berth/testing/containerd';
import { type BuiltImage, busyboxImage, manyFilesImage, pushImage, singleLargeFileImage } from '@berth/testing/images';
import { startRegistry } from '@berth/testing/registry';
import { percentile } from './stats.js';

const exec = promisify(execFile);
const berthCli = join(fileURLToPath(import.meta.url), '../../../apps/berth/dist/main.js');

const { values } = parseArgs({
  options: {
    image: { type: 'string', default: 'many' },
    runs: { type: 'string', default: '3' },
    systems: { type: 'string', default: 'containerd,berthd-ctr,berthd-berth' },
  },
});
const runs = Number(values.runs);
const systems = values.systems.split(',');
const which = values.image === 'all' ? ['busybox', 'many', 'large'] : [values.image];

type System = 'containerd' | 'berthd-ctr' | 'berthd-berth';

async function timePull(system: System, ref: string, top: string): Promise<number> {
  const daemon = system === 'containerd' ? await startContainerd() : await startBerthd();
  try {
    const cmd =
      system === 'berthd-berth'
        ? [process.execPath, [berthCli, '--address', daemon.socket, 'pull', '--plain-http', '--progress', 'plain', ref]]
        : ['ctr', ['--address', daemon.socket, 'images', 'pull', '--plain-http', ref]];
    const t = process.hrtime.bigint();
    await exec(cmd[0] as string, cmd[1] as string[], { maxBuffer: 64 * 1024 * 1024 });
    const seconds = Number(process.hrtime.bigint() - t) / 1e9;
    // The pull must have produced the unpacked rootfs, or the time means nothing.
    const snaps = await exec('ctr', ['--address', daemon.socket, 'snapshots', 'ls']);
    if (!snaps.stdout.includes(top)) throw new Error(`${system}: snapshot ${top} missing after pull:\n${snaps.stdout}`);
    return seconds;
  } finally {
    await daemon.stop();
  }
}

const registry = await startRegistry();
try {
  for (const name of which) {
    const t0 = Date.now();
    const image: BuiltImage =
      name === 'busybox'
        ? await busyboxImage()
        : name === 'large'
          ? await singleLargeFileImage(500 * 1024 * 1024)
          : await manyFilesImage();
    const ref = await pushImage(registry, `bench/${name}`, 'latest', image);
    const compressed = image.layers.reduce((s, l) => s + l.size, 0);
    console.log(
      `\n${name}: ${image.layers.length} layers, ${image.stats.entries} entries, ${(image.stats.fileBytes / 2 ** 20).toFixed(1)} MiB of files, ` +
        `${(compressed / 2 ** 20).toFixed(1)} MiB compressed (built and pushed in ${((Date.now() - t0) / 1000).toFixed(1)} s)`,
    );
    const top = image.chainIds[image.chainIds.length - 1] ?? '';
    for (const system of systems as System[]) {
      const times: number[] = [];
      for (let i = 0; i < runs; i++) times.push(await timePull(system, ref, top));
      const sorted = [...times].sort((a, b) => a - b);
      const median =
        sorted.length % 2 === 1
          ? percentile(sorted, 50)
          : ((sorted[sorted.length / 2 - 1] ?? 0) + (sorted[sorted.length / 2] ?? 0)) / 2;
      console.log(
        `  ${system.padEnd(13)} median ${median.toFixed(2)} s  min ${(sorted[0] ?? 0).toFixed(2)} s  max ${(sorted[sorted.length - 1] ?? 0).toFixed(2)} s` +
          `  (runs: ${times.map((x) => x.toFixed(2)).join(', ')})`,
      );
    }
  }
} finally {
  await registry.stop();
}
