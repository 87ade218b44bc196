/**
 * Garbage collection end to end, with the real ctr against berthd all-in-one: sync deletes return once the
 * bytes are freed, and an expired lease is collected on an idle daemon.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { channelOptions } from '@berth/common/grpc-client';
import { gcClient } from '@berth/gc/client';
import { LeasesClient } from '@berth/proto/containerd/services/leases/v1/leases';
import { buildImage, busyboxImage, type LayerEntry, multiLayerImage, pushImage } from '@berth/testing/images';
import { freePort } from '@berth/testing/ports';
import { type Registry, startRegistry } from '@berth/testing/registry';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr, tableRows } from './src/ctr.js';

const exec = promisify(execFile);
const berthCli = join(import.meta.dirname, '../../apps/berth/dist/main.js');

/** Bytes under `dir` as `du -sb` counts them (files and directories). */
async function du(dir: string): Promise<number> {
  const { stdout } = await exec('du', ['-sb', dir]);
  return Number(stdout.split('\t')[0]);
}

let registry: Registry;
let busyboxRef: string;
let warmupRef: string;

beforeAll(async () => {
  registry = await startRegistry();
  busyboxRef = await pushImage(registry, 'gc/busybox', 'latest', await busyboxImage());
  warmupRef = await pushImage(registry, 'gc/warmup', 'v1', await multiLayerImage());
});

afterAll(async () => {
  await registry?.stop();
});

describe('gc with ctr against berthd (all-in-one)', () => {
  let d: BerthdProcess;
  const ns = 'gc-e2e';
  const run = async (args: string[]): Promise<string> => {
    const r = await ctr(d.socket, args, { namespace: ns, timeoutMs: 120_000 });
    expect(r.code, `ctr ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  let http: string;
  beforeAll(async () => {
    http = `127.0.0.1:${await freePort()}`;
    d = await startBerthd({ args: ['--http', http] });
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('ctr images rm --sync frees the content and snapshot bytes a pull and a run used', async () => {
    const content = join(d.dir, 'root', 'content');
    const snapshots = join(d.dir, 'root', 'snapshots');
    // A first image pulled and removed leaves the stores' directory skeleton, which the baseline then includes.
    await run(['images', 'pull', '--plain-http', warmupRef]);
    await run(['images', 'rm', '--sync', warmupRef]);
    const before = { content: await du(content), snapshots: await du(snapshots) };

    await run(['images', 'pull', '--plain-http', busyboxRef]);
    expect(await du(content)).toBeGreaterThan(before.content + 100_000);
    expect(tableRows(await run(['snapshots', 'ls'])).length).toBeGreaterThan(0);
    expect(await run(['run', '--rm', busyboxRef, 'gc-run', 'echo', 'collected'])).toContain('collected');

    await run(['images', 'rm', '--sync', busyboxRef]);
    // No waiting: a sync delete returns once the collection freed the space.
    expect(tableRows(await run(['content', 'ls']))).toEqual([]);
    expect(tableRows(await run(['snapshots', 'ls']))).toEqual([]);
    expect({ content: await du(content), snapshots: await du(snapshots) }).toEqual(before);
  });

  it('shows the scheduler plugin with its knobs, counts collections in /metrics, and berth gc prints what it freed', async () => {
    const plugins = await run(['plugins', 'ls', '-d', 'type==io.containerd.gc.v1']);
    expect(plugins).toMatch(/Type:\s+io\.containerd\.gc\.v1/);
    expect(plugins).toMatch(/ID:\s+scheduler/);
    for (const knob of [
      'pause_threshold\\s+0.02',
      'deletion_threshold\\s+0',
      'mutation_threshold\\s+100',
      'schedule_delay\\s+0s',
      'startup_delay\\s+100ms',
    ])
      expect(plugins).toMatch(new RegExp(knob));

    // An image whose gc.expire passed is collected, and the collector says so with /images/delete.
    await run(['images', 'pull', '--plain-http', warmupRef]);
    await run(['images', 'label', warmupRef, 'containerd.io/gc.expire=2001-01-01T00:00:00Z']);
    const events = spawnEvents(d.socket);
    try {
      await new Promise((r) => setTimeout(r, 500));
      const { stdout } = await exec(process.execPath, [berthCli, '--address', d.socket, '-n', ns, 'gc']);
      // The scheduler's own run (the label is a mutation, the expiry passed) may get there first: then this
      // run finds nothing left, and the events and the listings below still show the image collected.
      expect(stdout).toMatch(/removed: [01] images?, 0 leases, \d+ content records, 0 ingests, \d+ snapshots/);
      expect(stdout).toMatch(/freed: \d+ blobs \([\d.]+ (B|KiB|MiB)\)/);
      await waitFor(() => events.text().includes('/snapshot/remove') && events.text().includes('/images/delete'));
    } finally {
      events.stop();
    }
    expect(tableRows(await run(['images', 'ls']))).toEqual([]);
    expect(tableRows(await run(['snapshots', 'ls']))).toEqual([]);

    const metrics = await (await fetch(`http://${http}/metrics`)).text();
    expect(metrics).toMatch(/containerd_gc_collections_total\{[^}]*status="success"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/containerd_gc_gc_seconds_count\{[^}]*\} [1-9]/);
    for (const phase of ['mark', 'sweep', 'content', 'snapshots'])
      expect(metrics).toMatch(new RegExp(`berth_gc_${phase}_seconds_count\\{[^}]*\\} [1-9]`));
  });

  it('ctr leases rm --sync and content prune references free what the lease held', async () => {
    const blob = Buffer.from(`held by a lease ${Date.now()}`);
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    await run(['leases', 'create', '--id', 'gc-held']);
    await addToLease(d.socket, ns, 'gc-held', digest);
    const ingest = await ctr(d.socket, ['content', 'ingest', '--expected-digest', digest, 'gc-held-ref'], {
      namespace: ns,
      input: blob,
    });
    expect(ingest.code, ingest.stderr).toBe(0);
    await run(['content', 'prune', 'references']);
    expect(tableRows(await run(['content', 'ls'])).map((r) => r[0])).toEqual([digest]);
    await run(['leases', 'rm', '--sync', 'gc-held']);
    expect(tableRows(await run(['content', 'ls']))).toEqual([]);

    // Unreferenced content goes with `ctr content prune references` (a sync delete of a throwaway lease).
    const loose = Buffer.from(`loose ${Date.now()}`);
    const looseDigest = `sha256:${createHash('sha256').update(loose).digest('hex')}`;
    await run(['leases', 'create', '--id', 'gc-loose']);
    await addToLease(d.socket, ns, 'gc-loose', looseDigest);
    const r = await ctr(d.socket, ['content', 'ingest', '--expected-digest', looseDigest, 'gc-loose-ref'], {
      namespace: ns,
      input: loose,
    });
    expect(r.code, r.stderr).toBe(0);
    await run(['leases', 'rm', 'gc-loose']);
    await run(['content', 'prune', 'references']);
    expect(tableRows(await run(['content', 'ls']))).toEqual([]);
  });

  it('collects a blob held by a lease that expired, with no other activity (idle trigger)', async () => {
    const blob = Buffer.from(`expiring ${Date.now()}`);
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    await run(['leases', 'create', '--id', 'gc-expiring', '--expires', '3s']);
    await addToLease(d.socket, ns, 'gc-expiring', digest);
    const ingest = await ctr(d.socket, ['content', 'ingest', '--expected-digest', digest, 'gc-expiring-ref'], {
      namespace: ns,
      input: blob,
    });
    expect(ingest.code, ingest.stderr).toBe(0);
    const start = Date.now();
    expect(tableRows(await run(['content', 'ls'])).map((r) => r[0])).toEqual([digest]);
    let gone = false;
    while (!gone && Date.now() - start < 65_000) {
      await new Promise((r) => setTimeout(r, 1_000));
      // `content ls` reads only; it is no mutation the scheduler counts.
      gone = tableRows(await run(['content', 'ls'])).length === 0;
    }
    expect(gone, 'the blob outlived its lease by more than 65 s').toBe(true);
    expect(tableRows(await run(['leases', 'ls']))).toEqual([]);
  }, 90_000);

  it('pulls racing collections run back to back all succeed: 20 at once (moby#53321), and one retried right after a cancelled one (containerd #3787, #10723)', async () => {
    // Twenty images sharing a base layer, each with layers of its own.
    const base: LayerEntry[] = [
      { kind: 'dir', path: 'base' },
      { kind: 'file', path: 'base/shared', data: randomBytes(200_000) },
    ];
    const refs = await Promise.all(
      Array.from({ length: 20 }, async (_, i) =>
        pushImage(
          registry,
          `gc/race-${i}`,
          'v1',
          await buildImage({
            layers: [
              { entries: base },
              { entries: [{ kind: 'file', path: `own-${i}`, data: randomBytes(50_000) }] },
              { entries: [{ kind: 'file', path: `top-${i}`, data: `${i}\n` }] },
            ],
          }),
        ),
      ),
    );
    const gc = gcClient(d.socket);
    let stop = false;
    let collections = 0;
    const collecting = (async () => {
      while (!stop) {
        await gc.collect({ namespace: undefined, lease: undefined, signal: AbortSignal.timeout(30_000) });
        collections++;
      }
    })();
    const pull = (ref: string) =>
      ctr(d.socket, ['images', 'pull', '--plain-http', ref], { namespace: ns, timeoutMs: 120_000 });
    try {
      for (const r of await Promise.all(refs.map(pull))) expect(r.code, r.stderr).toBe(0);
      const checked = tableRows(await run(['images', 'check']));
      expect(checked.map((r) => r[0]).sort()).toEqual([...refs].sort());
      // REF TYPE DIGEST STATUS SIZE UNPACKED: every image complete and unpacked.
      for (const row of checked) expect(row.join(' ')).toMatch(/ complete .* true$/);

      // Cancelled mid-pull and retried at once, the image removed in between so that its content and the
      // cancelled pull's snapshots are garbage for the collections running beside it.
      const [ref] = refs;
      for (let i = 0; i < 5; i++) {
        await run(['images', 'rm', ref ?? '']);
        const cancelled = spawn(
          'ctr',
          ['--address', d.socket, '--namespace', ns, 'images', 'pull', '--plain-http', ref ?? ''],
          { stdio: 'ignore' },
        );
        const closed = new Promise((r) => cancelled.once('close', r));
        await new Promise((r) => setTimeout(r, 20 + i * 20));
        cancelled.kill('SIGKILL'); // a no-op if the pull was already done
        await closed;
        const retried = await pull(ref ?? '');
        expect(retried.code, retried.stderr).toBe(0);
      }
      expect(collections).toBeGreaterThan(5);
    } finally {
      stop = true;
      await collecting;
      gc.close();
    }
    await run(['images', 'rm', '--sync', ...refs]);
    // The cancelled pulls' leases hold what they had written (until they expire, as on containerd).
    for (const [lease] of tableRows(await run(['leases', 'ls']))) await run(['leases', 'rm', '--sync', lease ?? '']);
    expect(tableRows(await run(['snapshots', 'ls']))).toEqual([]);
    expect(tableRows(await run(['content', 'ls']))).toEqual([]);
  }, 240_000);
});

/** `ctr events` running in the background: what it printed so far. */
function spawnEvents(socket: string): { text(): string; stop(): void } {
  const child = spawn('ctr', ['--address', socket, 'events'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  return { text: () => out, stop: () => child.kill('SIGTERM') };
}

async function waitFor(ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Leases.AddResource (ctr 1.6 has no command for it): the lease holds the blob before it is written. */
async function addToLease(socket: string, ns: string, lease: string, digest: string): Promise<void> {
  const client = new LeasesClient(`unix://${socket}`, grpc.credentials.createInsecure(), channelOptions);
  try {
    const md = new grpc.Metadata();
    md.set('containerd-namespace', ns);
    await new Promise<void>((resolve, reject) =>
      client.addResource({ id: lease, resource: { id: digest, type: 'content' } }, md, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  } finally {
    client.close();
  }
}
