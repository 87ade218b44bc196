import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busyboxImage, multiLayerImage, pushImage } from '@berth/testing/images';
import { type NatsProcess, startNatsServer } from '@berth/testing/nats';
import { freePort } from '@berth/testing/ports';
import { type TestPostgres, usePostgres } from '@berth/testing/postgres';
import { type Registry, startRegistry } from '@berth/testing/registry';
import { type TestS3, useS3 } from '@berth/testing/s3';
import { uniqueName } from '@berth/testing/unique-name';
import { Client as S3Client } from 'minio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr, tableRows } from './src/ctr.js';

/**
 * A cluster on one machine, every part its own process: Postgres (a fresh database), a private NATS JetStream,
 * an S3 server, two replicas each of content and metadata and one events service (each on its own loopback
 * address), and three nodes (`serve node`: gateway, snapshots, diff, tasks) with their own root, state and
 * socket. The real ctr drives the nodes.
 */
describe('cluster: three nodes, replicated content and metadata, one event stream', () => {
  let pg: TestPostgres;
  let nats: NatsProcess;
  let s3: TestS3;
  let registry: Registry;
  let dir: string;
  let config: Record<string, unknown>;
  const replicas = new Map<string, BerthdProcess>();
  const nodes = new Map<string, BerthdProcess>();
  const watchers: ChildProcess[] = [];
  const ns = uniqueName('cluster');
  let busybox: string;

  const on = (node: string, args: readonly string[], timeoutMs = 60_000) => {
    const p = nodes.get(node);
    if (!p) throw new Error(`no node ${node}`);
    return ctr(p.socket, args, { namespace: ns, timeoutMs });
  };
  const ok = async (node: string, args: readonly string[]) => {
    const r = await on(node, args);
    expect(r.code, `ctr ${args.join(' ')} on ${node}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  const startNode = async (name: string): Promise<BerthdProcess> => {
    const nodeDir = join(dir, name);
    await mkdir(nodeDir, { recursive: true });
    const p = await startBerthd({
      role: ['serve', 'node'],
      config,
      dir: nodeDir,
      socket: join(nodeDir, 'berth.sock'),
      args: ['--node', name],
    });
    nodes.set(name, p);
    return p;
  };

  beforeAll(async () => {
    [pg, nats, s3, registry] = await Promise.all([
      usePostgres(),
      startNatsServer(),
      useS3(),
      startRegistry({ accessLog: true }),
    ]);
    dir = await mkdtemp(join(tmpdir(), 'berth-e2e-cluster-'));
    const [contentPort, metadataPort, eventsPort] = [await freePort(), await freePort(), await freePort()];
    const at = (host: number, port: number) => `127.0.0.${host}:${port}`;
    // The one file every process reads (the node name comes from --node): see cluster.json at the repo root.
    config = {
      postgres: pg.url,
      nats: nats.url,
      metadata: { address: `${at(4, metadataPort)},${at(5, metadataPort)}` },
      content: {
        address: `${at(2, contentPort)},${at(3, contentPort)}`,
        backend: 's3',
        s3: {
          endpoint: `http://${s3.endPoint}:${s3.port}`,
          bucket: s3.bucket,
          'access-key': s3.accessKey,
          'secret-key': s3.secretKey,
          region: s3.region,
          // One PUT per staged part (s3rver has no multipart uploads); the test's layers are far smaller.
          'part-size': 64 * 1024 * 1024,
        },
      },
      events: { address: at(6, eventsPort) },
    };
    const serve = async (name: string, service: string, listen: string) => {
      const p = await startBerthd({
        role: ['serve', service],
        config,
        dir: join(dir, name),
        socket: listen,
        args: ['--listen', listen],
      });
      replicas.set(name, p);
    };
    await mkdir(join(dir, 'metadata-1'));
    await serve('metadata-1', 'metadata', at(4, metadataPort));
    await Promise.all(
      [
        ['metadata-2', 'metadata', at(5, metadataPort)],
        ['content-1', 'content', at(2, contentPort)],
        ['content-2', 'content', at(3, contentPort)],
        ['events', 'events', at(6, eventsPort)],
      ].map(async ([name, service, listen]) => {
        await mkdir(join(dir, name ?? ''));
        await serve(name ?? '', service ?? '', listen ?? '');
      }),
    );
    for (const name of ['a', 'b', 'c']) await startNode(name);
    busybox = await pushImage(registry, 'cluster/busybox', 'latest', await busyboxImage());
  }, 120_000);

  afterAll(async () => {
    for (const w of watchers) w.kill('SIGINT');
    for (const p of nodes.values()) await p.stop();
    for (const p of [...replicas.values()].reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
    await Promise.all([pg?.drop(), nats?.dispose(), s3?.stop(), registry?.stop()]);
  }, 60_000);

  it('an image pulled on A is listed on B and runs on B and C with no blob fetched twice from the registry', async () => {
    const eventsOnC = watch(nodes.get('c')?.socket ?? '', ['events', `namespace==${ns}`]);
    // ctr events attaches asynchronously: wait until C sees an event made on A.
    await ok('a', ['namespaces', 'label', ns, 'probe=1']);
    await eventsOnC.waitFor((l) => l.includes('/namespaces/update'), 20_000);

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
    for (const node of ['b', 'c']) expect(tableRows(await ok(node, ['snapshots', 'ls'])).length).toBeGreaterThan(0);

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
    const objects = await bucketObjects(s3);
    for (const d of digests)
      expect(
        objects.filter((o) => o === `blobs/${d.replace(':', '/')}`),
        d,
      ).toHaveLength(1);
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
    expect(elsewhere.stderr).toMatch(/snapshot taken is on node a\b.*, not on this node \(c\).*failed precondition/);
    expect(elsewhere.code).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(tableRows(await ok('c', ['tasks', 'ls'])).map((r) => r[0])).not.toContain('taken');
  });

  it('with one content and one metadata replica killed, every node still lists images and runs containers', async () => {
    await replicas.get('content-1')?.kill();
    await replicas.get('metadata-1')?.kill();
    for (const node of ['a', 'b', 'c']) {
      for (let i = 0; i < 3; i++) {
        expect(tableRows(await ok(node, ['images', 'ls'])).map((r) => r[0])).toContain(busybox);
        expect(await ok(node, ['content', 'ls'])).toContain('sha256:');
      }
      expect(await ok(node, ['run', '--rm', busybox, `after-${node}`, 'echo', 'still'])).toBe('still\n');
    }
  });

  it('a node killed with all its processes finds its running container again when it comes back', async () => {
    await nodes.get('a')?.kill();
    await startNode('a');
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

async function bucketObjects(s3: TestS3): Promise<string[]> {
  const client = new S3Client({ ...s3 });
  const names: string[] = [];
  for await (const item of client.listObjectsV2(s3.bucket, '', true)) {
    const name = (item as { name?: string }).name;
    if (name !== undefined) names.push(name);
  }
  return names;
}
