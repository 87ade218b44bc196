/**
 * Gateway overhead: the same unary call (Namespaces.Get, answered by the metadata service) made directly
 * to `berthd serve metadata` and through `berthd serve gateway`, each a separate process as in a cluster.
 * Reports requests/s with 64 calls in flight and the latency distribution of sequential calls.
 *
 *   pnpm --filter @berth/bench gateway [--seconds 5] [--sequential 3000]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startBerthd } from '@berth/e2e/berthd';
import { NamespacesClient } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import * as grpc from '@grpc/grpc-js';
import { fmt, summarize } from './stats.js';

const { values } = parseArgs({
  options: { seconds: { type: 'string' }, sequential: { type: 'string' }, inflight: { type: 'string' } },
});
const seconds = Number(values.seconds ?? 5);
const sequential = Number(values.sequential ?? 3000);
const inflight = Number(values.inflight ?? 64);

function get(client: NamespacesClient, md: grpc.Metadata): Promise<void> {
  return new Promise((resolve, reject) => client.get({ name: 'default' }, md, (e) => (e ? reject(e) : resolve())));
}

async function measure(label: string, address: string): Promise<void> {
  const client = new NamespacesClient(address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('containerd-namespace', 'default');
  for (let i = 0; i < 500; i++) await get(client, md); // warm-up: connection, JIT, database caches

  const lat: number[] = [];
  for (let i = 0; i < sequential; i++) {
    const t = process.hrtime.bigint();
    await get(client, md);
    lat.push(Number(process.hrtime.bigint() - t) / 1e6);
  }

  let done = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (Date.now() < end) {
        await get(client, md);
        done++;
      }
    }),
  );
  const s = summarize(lat);
  console.log(
    `${label.padEnd(16)} ${(done / seconds).toFixed(0).padStart(7)} req/s (${inflight} in flight)   ` +
      `sequential n=${s.n} p50 ${fmt(s.p50)}  p90 ${fmt(s.p90)}  p99 ${fmt(s.p99)}`,
  );
  client.close();
}

const dir = await mkdtemp(join(tmpdir(), 'berth-bench-gw-'));
const config = { metadata: { address: `unix://${join(dir, 'metadata.sock')}` }, 'log-level': 'warn' };
const metadata = await startBerthd({ role: ['serve', 'metadata'], config, dir, socket: join(dir, 'metadata.sock') });
const gateway = await startBerthd({ role: ['serve', 'gateway'], config, dir, socket: join(dir, 'gateway.sock') });
try {
  console.log(`Namespaces.Get over unix sockets, ${seconds}s throughput runs; node ${process.version}`);
  await measure('direct', `unix://${metadata.socket}`);
  await measure('via gateway', `unix://${gateway.socket}`);
  await measure('direct (again)', `unix://${metadata.socket}`);
  await measure('via gateway', `unix://${gateway.socket}`);
} finally {
  await gateway.stop();
  await metadata.stop();
  await rm(dir, { recursive: true, force: true });
}
