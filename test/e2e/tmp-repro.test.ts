import { busyboxLayer, manyFilesImage, pushImage } from '@berth/testing/images';
import { startRegistry } from '@berth/testing/registry';
import { expect, it } from 'vitest';
import { startCluster } from './src/cluster.js';
import { ctr } from './src/ctr.js';

it('repro', async () => {
  const registry = await startRegistry();
  const cluster = await startCluster({ nodes: ['a'], replicas: Number(process.env.REPLICAS ?? 1) });
  try {
    const ref = await pushImage(
      registry,
      'r/many',
      'latest',
      await manyFilesImage({ base: busyboxLayer(), bytes: 40 * 2 ** 20, files: 4000, layers: 2 }),
    );
    const t = Date.now();
    const r = await ctr(cluster.socket('a'), ['-n', 'x', 'images', 'pull', '--plain-http', ref], { timeoutMs: 90_000 });
    console.log('pull', r.code, Date.now() - t, r.stderr.slice(-500));
    if (r.code !== 0) console.log(cluster.nodes.get('a')?.logs().slice(-5000));
    expect(r.code).toBe(0);
  } finally {
    await cluster.stop();
    await registry.stop();
  }
}, 200_000);
