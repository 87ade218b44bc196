import { type ChildProcess, spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { channelOptions, invoke } from '@berth/common/grpc-client';
import { gcClient } from '@berth/gc/client';
import { type GetImageResponse, ImagesClient } from '@berth/proto/containerd/services/images/v1/images';
import { type BuiltImage, buildImage, busyboxImage, multiLayerImage, pushImage } from '@berth/testing/images';
import { type Registry, startRegistry } from '@berth/testing/registry';
import type { TestS3 } from '@berth/testing/s3';
import { uniqueName } from '@berth/testing/unique-name';
import * as grpc from '@grpc/grpc-js';
import { Client as S3Client } from 'minio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, startCluster } from './src/cluster.js';
import { ctr, tableRows } from './src/ctr.js';

/**
 * A cluster on one machine, every part its own process (see startCluster): Postgres, NATS JetStream, an S3
 * server, two replicas each of content and metadata, one events service, and three nodes a, b and c with their
 * own root, state and socket. The real ctr drives the nodes.
 */
describe('cluster: three nodes, replicated content and metadata, one event stream', () => {
  let cluster: Cluster;
  let registry: Registry;
  const watchers: ChildProcess[] = [];
  const ns = uniqueName('cluster');
  let busybox: string;
  let busyboxBuilt: BuiltImage;

  const on = (node: string, args: readonly string[], timeoutMs = 60_000) =>
    ctr(cluster.socket(node), args, { namespace: ns, timeoutMs });
  const ok = async (node: string, args: readonly string[]) => {
    const r = await on(node, args);
    expect(r.code, `ctr ${args.join(' ')} on ${node}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  beforeAll(async () => {
    [cluster, registry] = await Promise.all([startCluster(), startRegistry({ accessLog: true })]);
    busyboxBuilt = await busyboxImage();
    busybox = await pushImage(registry, 'cluster/busybox', 'latest', busyboxBuilt);
  }, 120_000);

  afterAll(async () => {
    for (const w of watchers) w.kill('SIGINT');
    await Promise.all([cluster?.stop(), registry?.stop()]);
  }, 60_000);

  it('an image pulled on A is listed on B and runs on B and C with no blob fetched twice from the registry', async () => {
    const eventsOnC = watch(cluster.socket('c'), ['events', `namespace==${ns}`]);
    // ctr events attaches asynchronously and sees only what is published after: probe until C sees A's change.
    for (let i = 0; ; i++) {
      await ok('a', ['namespaces', 'label', ns, `probe=${i}`]);
      const seen = await eventsOnC.waitFor((l) => l.includes(`"probe":"${i}"`), 300).catch(() => undefined);
      if (seen) break;
      if (i === 60) throw new Error('ctr events on C never saw an event made on A');
    }

    await ok('a', ['images', 'pull', '--plain-http', busybox]);
    expect(tableRows(await ok('b', ['images', 'ls'])).map((r) => r[0])).toContain(busybox);
    const fetchedByPull = await registry.blobFetches();
    expect(fetchedByPull.size).toBeGreaterThanOrEqual(2); // config and layer

    expect(await ok('a', ['run', '--rm', busybox, 'run-a', 'echo', 'from a'])).toBe('from a\n');
    expect(await ok('b', ['run', '--rm', busybox, 'run-b', 'echo', 'from b'])).toBe('from b\n');
    expect(await ok('c', ['run', '--rm', busybox, 'run-c', 'echo', 'from c'])).toBe('from c\n');
    expect(await registry.blobFetches()).toEqual(fetchedByPull);
    for (const [digest, times] of fetchedByPull) expect(times, digest).toBe(1);

    // B and C unpacked from the shared content store into their own snapshotters.
    const top = busyboxBuilt.chainIds.at(-1);
    for (const node of ['b', 'c'])
      expect(tableRows(await ok(node, ['snapshots', 'ls'])).map((r) => r[0])).toContain(top);

    // One event stream: C saw the tasks of A and B.
    await eventsOnC.waitFor((l) => l.includes('/tasks/exit') && l.includes('"run-a"'), 20_000);
    await eventsOnC.waitFor((l) => l.includes('/tasks/exit') && l.includes('"run-b"'), 20_000);
  });

  it('two nodes pulling one image at once both succeed, and each blob is stored once', async () => {
    const image = await multiLayerImage();
    const ref = await pushImage(registry, 'cluster/multi', 'latest', image);
    const [pa, pb] = await Promise.all([
      on('a', ['images', 'pull', '--plain-http', ref]),
      on('b', ['images', 'pull', '--plain-http', ref]),
    ]);
    expect(pa.code, pa.stderr).toBe(0);
    expect(pb.code, pb.stderr).toBe(0);
    for (const node of ['a', 'b', 'c'])
      expect(tableRows(await ok(node, ['images', 'ls'])).map((r) => r[0])).toContain(ref);

    const digests = [image.manifest, image.config, ...image.layers].map((b) => b.digest);
    const objects = await bucketObjects(cluster.s3);
    // The bucket holds the blobs of the two images pulled so far, each under its digest, and nothing else.
    const pulled = [busyboxBuilt.manifest, busyboxBuilt.config, ...busyboxBuilt.layers].map((b) => b.digest);
    expect(objects.filter((o) => o.startsWith('blobs/')).sort()).toEqual(
      [...new Set([...pulled, ...digests])].map((d) => `blobs/${d.replace(':', '/')}`).sort(),
    );
    // No half-written ingest left behind by the writer that lost the race.
    expect(objects.filter((o) => o.startsWith('ingests/'))).toEqual([]);
    const listed = tableRows(await ok('c', ['content', 'ls'])).map((r) => r[0]);
    for (const d of digests)
      expect(
        listed.filter((x) => x === d),
        d,
      ).toHaveLength(1);
  });

  it('container ids are cluster-wide; tasks are node-local', async () => {
    await ok('a', ['run', '-d', busybox, 'taken', 'sleep', '600']);
    const clash = await on('b', ['run', '--rm', busybox, 'taken', 'echo', 'no']);
    expect(clash.code).not.toBe(0);
    expect(clash.stderr).toMatch(/container "taken": already exists/);

    expect(tableRows(await ok('a', ['tasks', 'ls'])).find((r) => r[0] === 'taken')?.[2]).toBe('RUNNING');
    for (const node of ['b', 'c']) {
      expect(tableRows(await ok(node, ['tasks', 'ls'])).map((r) => r[0])).not.toContain('taken');
      expect(tableRows(await ok(node, ['containers', 'ls'])).map((r) => r[0])).toContain('taken');
    }

    // C has the container's record but not its snapshot (that is on A): a clear refusal, at once.
    const started = Date.now();
    const elsewhere = await on('c', ['tasks', 'start', 'taken'], 20_000);
    // (B holds one too: the snapshot its refused `ctr run` prepared stays, leased, until GC collects it.)
    expect(elsewhere.stderr).toMatch(
      /snapshot taken is on nodes? (b, )?a(, b)?, not on this node \(c\): .*failed precondition/,
    );
    expect(elsewhere.code).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(tableRows(await ok('c', ['tasks', 'ls'])).map((r) => r[0])).not.toContain('taken');
  });

  it('a change made through one replica is seen through the other at once (row caches kept coherent)', async () => {
    // Every node's gateway balances over both metadata replicas: reading a few times warms both caches.
    for (const node of ['a', 'b', 'c']) for (let i = 0; i < 2; i++) await ok(node, ['images', 'ls']);
    for (const node of ['a', 'b', 'c']) await ok(node, ['containers', 'info', 'taken']);
    // And straight at each replica (Images.Get answers from its row cache): whichever replica took the write,
    // the other one must not keep answering its cached row.
    const direct = ['metadata-1', 'metadata-2'].map(
      (r) => new ImagesClient(cluster.replicas.get(r)?.socket ?? '', grpc.credentials.createInsecure(), channelOptions),
    );
    const labelsVia = async (client: ImagesClient) =>
      (
        await invoke<GetImageResponse>((md, o, cb) => client.get({ name: busybox }, md, o, cb), {
          namespace: ns,
          lease: undefined,
          signal: new AbortController().signal,
        })
      ).image?.labels;
    for (const client of direct) expect(await labelsVia(client)).toEqual({});
    await ok('a', ['images', 'label', busybox, 'round=1']);
    for (const client of direct) expect(await labelsVia(client)).toEqual({ round: '1' });
    for (const client of direct) client.close();
    await ok('b', ['containers', 'label', 'taken', 'round=1']);
    for (const node of ['c', 'b', 'a', 'c']) {
      const row = tableRows(await ok(node, ['images', 'ls'])).find((r) => r[0] === busybox);
      expect(row?.at(-1), node).toBe('round=1');
      expect(JSON.parse(await ok(node, ['containers', 'info', 'taken'])).Labels).toMatchObject({ round: '1' });
    }
  });

  it('with one content and one metadata replica killed, every node still lists images and runs containers', async () => {
    await cluster.replicas.get('content-1')?.kill();
    await cluster.replicas.get('metadata-1')?.kill();
    for (const node of ['a', 'b', 'c']) {
      for (let i = 0; i < 3; i++) {
        expect(tableRows(await ok(node, ['images', 'ls'])).map((r) => r[0])).toContain(busybox);
        expect(await ok(node, ['content', 'ls'])).toContain('sha256:');
      }
      expect(await ok(node, ['run', '--rm', busybox, `after-${node}`, 'echo', 'still'])).toBe('still\n');
    }
    // Writes too: a pull of new blobs goes through the surviving replicas, and another node sees the image.
    const fresh = await buildImage({ layers: [{ entries: [{ kind: 'file', path: 'after-kill', data: ns }] }] });
    const ref = await pushImage(registry, 'cluster/after-kill', 'latest', fresh);
    await ok('c', ['images', 'pull', '--plain-http', ref]);
    expect(tableRows(await ok('a', ['images', 'ls'])).map((r) => r[0])).toContain(ref);
  });

  it('a node killed with all its processes finds its running container again when it comes back', async () => {
    await cluster.nodes.get('a')?.kill();
    await cluster.startNode('a');
    expect(tableRows(await ok('a', ['tasks', 'ls'])).find((r) => r[0] === 'taken')?.[2]).toBe('RUNNING');
    const exec = await ok('a', ['tasks', 'exec', '--exec-id', 'probe', 'taken', 'echo', 'alive']);
    expect(exec).toBe('alive\n');
    await ok('a', ['tasks', 'kill', '-s', 'SIGKILL', 'taken']);
    for (let i = 0; ; i++) {
      const row = tableRows(await ok('a', ['tasks', 'ls'])).find((r) => r[0] === 'taken');
      if (row?.[2] === 'STOPPED') break;
      if (i > 100) throw new Error(`taken did not stop: ${row?.join(' ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await ok('a', ['tasks', 'rm', 'taken']);
    await ok('a', ['containers', 'rm', 'taken']);
  });

  it("images rm --sync on one node, with the leading collector killed, frees the shared store and every node's snapshots", async () => {
    const collectors = ['gc-1', 'gc-2'];
    const leading: string[] = [];
    for (let i = 0; leading.length === 0 && i < 150; i++) {
      for (const name of collectors) {
        const c = gcClient(cluster.replicas.get(name)?.socket ?? '');
        if ((await c.status(gcCtx()).catch(() => undefined))?.leader) leading.push(name);
        c.close();
      }
      if (leading.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(leading).toHaveLength(1);
    const refs = tableRows(await ok('b', ['images', 'ls'])).map((r) => r[0] ?? '');
    expect(refs.length).toBeGreaterThanOrEqual(3);
    const snapshotDirs = () =>
      Promise.all(['a', 'b', 'c'].map((n) => readdir(join(cluster.root(n), 'snapshots', 'overlayfs')).catch(() => [])));
    expect((await snapshotDirs()).every((d) => d.length > 0)).toBe(true);
    // Sync deletes reach the collectors through the list of both (round robin): each one must find the leader,
    // whichever replica the call lands on first, from whichever node.
    for (const [i, ref] of refs.slice(0, 2).entries()) await ok(i === 0 ? 'a' : 'c', ['images', 'rm', '--sync', ref]);
    for (let i = 0; i < 4; i++) {
      const c = gcClient(String((cluster.config.gc as { address: string }).address));
      await c.collect(gcCtx()).finally(() => c.close());
    }
    // With the leader gone, the survivor answers once it leads.
    await cluster.replicas.get(leading[0] ?? '')?.kill();
    await ok('b', ['images', 'rm', '--sync', ...refs.slice(2)]);
    for (const node of ['a', 'b', 'c']) {
      expect(tableRows(await ok(node, ['images', 'ls'])), node).toEqual([]);
      expect(tableRows(await ok(node, ['content', 'ls'])), node).toEqual([]);
      expect(tableRows(await ok(node, ['snapshots', 'ls'])), node).toEqual([]);
    }
    // Every node's snapshot directories are free when the sync delete returns: the collector asks each node
    // whose records it removed, and waits for its answer.
    expect(await snapshotDirs()).toEqual([[], [], []]);
    // The S3 objects once past the 3 s grace window.
    const gc = gcClient(String((cluster.config.gc as { address: string }).address));
    try {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const objects = await bucketObjects(cluster.s3);
        if (objects.length === 0 || Date.now() > deadline) {
          expect(objects).toEqual([]);
          break;
        }
        await new Promise((r) => setTimeout(r, 1_000));
        await gc.collect(gcCtx());
      }
    } finally {
      gc.close();
    }
  }, 120_000);

  /** `ctr <args>` left running, its output lines searchable. */
  function watch(socket: string, args: readonly string[]) {
    const child = spawn('ctr', ['--address', socket, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    watchers.push(child);
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    return {
      async waitFor(pred: (line: string) => boolean, timeoutMs: number): Promise<string> {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const hit = out.split('\n').find(pred);
          if (hit !== undefined) return hit;
          if (child.exitCode !== null) throw new Error(`ctr ${args.join(' ')} exited: ${err}`);
          if (Date.now() > deadline) throw new Error(`no matching line within ${timeoutMs} ms:\n${out}\n${err}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      },
    };
  }
});

const gcCtx = () => ({ namespace: undefined, lease: undefined, signal: AbortSignal.timeout(30_000) });

async function bucketObjects(s3: TestS3): Promise<string[]> {
  const client = new S3Client({ ...s3 });
  const names: string[] = [];
  for await (const item of client.listObjectsV2(s3.bucket, '', true)) {
    const name = (item as { name?: string }).name;
    if (name !== undefined) names.push(name);
  }
  return names;
}
