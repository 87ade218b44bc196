/**
 * Image records at scale, Berth beside containerd on the same machine: both get the same N image records
 * (created through the Images API with our TypeScript client), all pointing at one small real image whose
 * blobs were written through Content.Write with the gc reference labels a pull sets (under a lease, so
 * containerd's collector keeps them), so `ctr images ls` walks index → manifest → config in
 * Content for every record on both. Two floor servers answer the same calls from messages built in memory
 * at start: grpc-floor.ts through grpc-js (how fast a grpc-js server can be here at all) and http2-floor.ts
 * straight from Node's http2 (what any gRPC library adds on top of Node).
 * Then, for each, the median of several runs, taken in turns, of:
 *   - `ctr images ls` (Images.List + Content reads per image), `ctr images ls -q` (Images.List only),
 *   - `ctr images ls -q labels.group==3` (a filtered List through ctr),
 *   - a filtered Images.List through the gRPC client (`name==…` and `labels.group==3`).
 *
 *   node bench/dist/metadata-images.js [--images 10000] [--runs 5] [--postgres postgres://…] [--skip-full-ls]
 *                                      [--no-floor]
 *
 * containerd 1.6 runs privately: root, state and sockets in a temp dir, CRI disabled.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once, setMaxListeners } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connectNode, createLease, deleteLease } from '@berth/client';
import { startBerthd } from '@berth/e2e/berthd';
import { ctr } from '@berth/e2e/ctr';
import { ImagesClient } from '@berth/proto/containerd/services/images/v1/images';
import { startContainerd } from '@berth/testing/containerd';
import { type TinyImage, tinyImage } from '@berth/testing/tiny-image';
import * as grpc from '@grpc/grpc-js';
import { benchNamespace, imageRecord } from './image-records.js';
import { cpuMs } from './proc.js';
import { summarize } from './stats.js';

const { values } = parseArgs({
  options: {
    images: { type: 'string' },
    runs: { type: 'string' },
    postgres: { type: 'string' },
    // `ctr images ls` with content reads takes minutes at 10,000 images; skip it to time the List paths only.
    'skip-full-ls': { type: 'boolean' },
    'no-floor': { type: 'boolean' },
  },
});
const count = Number(values.images ?? 10_000);
const here = dirname(fileURLToPath(import.meta.url));
const runs = Number(values.runs ?? 5);

interface Daemon {
  readonly label: string;
  readonly socket: string;
  readonly pid: number | undefined;
  /** Serves the bench's records from the start: nothing to populate. */
  readonly prebuilt?: boolean;
  stop(): Promise<void>;
}

async function startPrivateContainerd(): Promise<Daemon> {
  const c = await startContainerd();
  const version = spawnSync('containerd', ['--version'], { encoding: 'utf8' }).stdout.trim();
  return { label: `containerd (${version.split(' ')[2] ?? '?'})`, socket: c.socket, pid: c.pid, stop: c.stop };
}

async function startBerth(): Promise<Daemon> {
  const args = values.postgres ? ['--postgres', values.postgres] : [];
  const d = await startBerthd({ args, config: { 'log-level': 'warn' } });
  return {
    label: `berthd (${values.postgres ? 'PostgreSQL' : 'PGlite'})`,
    socket: d.socket,
    pid: d.child.pid,
    stop: async () => void (await d.stop()),
  };
}

/** A floor server of this folder (`grpc-floor.js`, `http2-floor.js`) in a process of its own. */
async function startFloor(script: string, label: string): Promise<Daemon> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-bench-floor-'));
  const socket = join(dir, 'floor.sock');
  const child = spawn(process.execPath, [join(here, script), socket, String(count)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  if (line.toString().trim() !== 'listening') throw new Error(`${script}: ${line.toString()}`);
  return {
    label,
    socket,
    pid: child.pid,
    prebuilt: true,
    async stop() {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function client(socket: string): { images: ImagesClient; md: grpc.Metadata } {
  const md = new grpc.Metadata();
  md.set('containerd-namespace', benchNamespace);
  return {
    images: new ImagesClient(`unix://${socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 << 20,
    }),
    md,
  };
}

async function populate(d: Daemon, image: TinyImage): Promise<number> {
  const node = connectNode(d.socket);
  const signal = AbortSignal.timeout(600_000);
  setMaxListeners(64, signal); // 16 creates in flight share it
  const ctx = { namespace: benchNamespace, lease: undefined, signal };
  const lease = await createLease(node, ctx);
  const leased = { ...ctx, lease };
  for (const [kind, blob] of image.blobs) {
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    await node.content.ingest(
      leased,
      { open: async (offset) => ({ start: offset, body: [blob.subarray(offset)] }) },
      { ref: `bench-${kind}`, desc: { mediaType: '', digest, size: blob.length }, labels: image.gcLabels[kind] },
    );
  }
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < count) {
        const record = imageRecord(next++, image);
        await node.images.create(ctx, record);
      }
    }),
  );
  const took = Date.now() - started;
  await deleteLease(node, benchNamespace, lease);
  node.close();
  // The images now hold the blobs; a collector that removed any of them would make `ls` cheaper than it is.
  const listed = await ctr(d.socket, ['--namespace', benchNamespace, 'content', 'ls', '-q'], { timeoutMs: 60_000 });
  const present = listed.stdout.trim().split('\n').length;
  if (present !== image.blobs.length)
    throw new Error(`${d.label}: ${present} of ${image.blobs.length} blobs left after populating`);
  return took;
}

interface Timing {
  readonly ms: number;
  /** The daemon's own CPU time per timed run. */
  readonly cpuMs: number;
}

/**
 * Times `run` on every daemon, taking turns run by run so that a machine that speeds up or slows down
 * affects both alike: one untimed warm-up run each (berthd's JIT warms up too), then `runs` timed ones.
 * Returns the median per daemon, by label.
 */
async function alternate(daemons: readonly Daemon[], run: (d: Daemon) => Promise<void>): Promise<Map<string, Timing>> {
  const samples = new Map<string, number[]>(daemons.map((d) => [d.label, []]));
  const cpu = new Map<string, number>(daemons.map((d) => [d.label, 0]));
  for (let i = 0; i <= runs; i++) {
    for (const d of daemons) {
      const cpu0 = await cpuMs(d.pid);
      const t = process.hrtime.bigint();
      await run(d);
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      if (i === 0) continue;
      samples.get(d.label)?.push(ms);
      cpu.set(d.label, (cpu.get(d.label) ?? 0) + (await cpuMs(d.pid)) - cpu0);
    }
  }
  return new Map(
    daemons.map((d) => [
      d.label,
      { ms: summarize(samples.get(d.label) ?? []).p50, cpuMs: (cpu.get(d.label) ?? 0) / runs },
    ]),
  );
}

function ctrRun(args: readonly string[], expectLines: number): (d: Daemon) => Promise<void> {
  return async (d) => {
    const r = await ctr(d.socket, ['--namespace', benchNamespace, ...args], { timeoutMs: 600_000 });
    if (r.code !== 0) throw new Error(`${d.label}: ctr ${args.join(' ')}: ${r.stderr.slice(0, 500)}`);
    const lines = r.stdout.trim().split('\n').length;
    if (lines !== expectLines)
      throw new Error(`${d.label}: ctr ${args.join(' ')} printed ${lines} lines, expected ${expectLines}`);
  };
}

function listRun(filters: string[], expect: number): (d: Daemon) => Promise<void> {
  const clients = new Map<string, ReturnType<typeof client>>();
  return async (d) => {
    let c = clients.get(d.label);
    if (!c) {
      c = client(d.socket);
      clients.set(d.label, c);
      openClients.push(c.images);
    }
    const { images, md } = c;
    const n = await new Promise<number>((resolve, reject) =>
      images.list({ filters }, md, (e, r) => (e ? reject(e) : resolve(r.images.length))),
    );
    if (n !== expect) throw new Error(`${d.label}: List ${filters.join(' ')} returned ${n}, expected ${expect}`);
  };
}

const image = tinyImage(Buffer.from('bench layer bytes'));
const daemons: Daemon[] = [];
const openClients: ImagesClient[] = [];
try {
  const floors = [
    () => startFloor('http2-floor.js', 'Node http2 floor (precomputed)'),
    () => startFloor('grpc-floor.js', 'grpc-js floor (precomputed)'),
  ];
  for (const start of [startPrivateContainerd, ...(values['no-floor'] ? [] : floors), startBerth])
    daemons.push(await start());
  const rows = new Map<string, Record<string, string>>(daemons.map((d) => [d.label, { daemon: d.label }]));
  const put = (column: string, cell: (t: Timing) => Record<string, string> | string, timings: Map<string, Timing>) => {
    for (const [label, t] of timings) {
      const c = cell(t);
      Object.assign(rows.get(label) ?? {}, typeof c === 'string' ? { [column]: c } : c);
    }
  };
  for (const d of daemons) {
    const ms = d.prebuilt ? undefined : await populate(d, image);
    Object.assign(rows.get(d.label) ?? {}, {
      [`create ${count}`]: ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`,
    });
  }
  const group = Math.ceil(count / 10);
  if (!values['skip-full-ls'])
    put(
      'ctr images ls',
      (t) => ({ 'ctr images ls': `${t.ms.toFixed(0)} ms`, 'ctr images ls: daemon CPU': `${t.cpuMs.toFixed(0)} ms` }),
      await alternate(daemons, ctrRun(['images', 'ls'], count + 1)),
    );
  put(
    'ctr images ls -q',
    (t) => `${t.ms.toFixed(0)} ms`,
    await alternate(daemons, ctrRun(['images', 'ls', '-q'], count)),
  );
  put(
    'ctr ls -q labels.group==3',
    (t) => `${t.ms.toFixed(0)} ms`,
    await alternate(daemons, ctrRun(['images', 'ls', '-q', 'labels.group==3'], group)),
  );
  put(
    'List name==…',
    (t) => `${t.ms.toFixed(1)} ms`,
    await alternate(daemons, listRun(['name==registry.test/bench/app00042:v1'], 1)),
  );
  put(
    'List labels.group==3',
    (t) => `${t.ms.toFixed(1)} ms`,
    await alternate(daemons, listRun(['labels.group==3'], group)),
  );
  for (const row of rows.values()) console.log(JSON.stringify(row));
  console.table([...rows.values()]);
} finally {
  for (const c of openClients) c.close();
  for (const d of daemons) await d.stop();
}
