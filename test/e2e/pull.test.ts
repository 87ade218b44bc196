/**
 * Pull end to end: the real `ctr images pull --plain-http` and our `berth pull` against berthd (and
 * `berth pull` against a private real containerd, for wire compatibility), from a local docker-registry.
 * Every unpacked rootfs is mounted as `ctr snapshots mounts` prints it and compared byte for byte with
 * the tree the test image promises (modes, owners, contents, links, whiteouts applied).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connectNode, type PullEvent, pull } from '@berth/client';
import { type ContainerdProcess, startContainerd } from '@berth/testing/containerd';
import {
  type BuiltImage,
  busyboxImage,
  compareTree,
  multiLayerImage,
  multiPlatformIndex,
  pushImage,
  singleLargeFileImage,
} from '@berth/testing/images';
import { type Registry, startRegistry } from '@berth/testing/registry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr, tableRows } from './src/ctr.js';
import { mountCommand } from './src/mounts.js';

const exec = promisify(execFile);
const berthCli = join(import.meta.dirname, '../../apps/berth/dist/main.js');

function berth(
  socket: string,
  args: readonly string[],
  namespace = 'default',
): Promise<{ code: number; stdout: string; stderr: string }> {
  return exec(process.execPath, [berthCli, '--address', socket, '-n', namespace, ...args], {
    env: { ...process.env },
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({
      code: e.code ?? 1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    }),
  );
}

/**
 * Mounts a read-only view of committed snapshot `chainId` (via ctr, as a user would) and diffs it with the image's
 * tree. The mounts come from `view --mounts` itself: gc, which a pull's lease removal sets off, may collect the
 * unreferenced view before a later `ctr snapshots mounts` (CI saw this once on berthd).
 */
async function rootfsDiffs(socket: string, namespace: string, image: BuiltImage): Promise<string[]> {
  const top = image.chainIds[image.chainIds.length - 1] ?? '';
  const key = `verify-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const mnt = await mkdtemp('/tmp/berth-e2e-pull-mnt-');
  const run = async (args: string[]): Promise<string> => {
    const r = await ctr(socket, args, { namespace });
    expect(r.code, `ctr ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  try {
    const line = mountCommand(await run(['snapshots', 'view', '--mounts', key, top]), mnt);
    expect(line).toMatch(/^mount -t (bind|overlay) \S+ \S+ -o \S+$/);
    await exec('sh', ['-c', line]);
    try {
      return await compareTree(mnt, image.expected);
    } finally {
      await exec('umount', [mnt]);
      // Not asserted: gc may already have taken the unreferenced view.
      await ctr(socket, ['snapshots', 'rm', key], { namespace });
    }
  } finally {
    await rm(mnt, { recursive: true, force: true });
  }
}

let registry: Registry;
let busybox: BuiltImage;
let multi: BuiltImage;
let refs: { busybox: string; multiIndex: string; multiDocker: string; multiDockerImage: BuiltImage };

beforeAll(async () => {
  registry = await startRegistry();
  busybox = await busyboxImage();
  multi = await multiLayerImage();
  const multiDockerImage = await multiLayerImage({ format: 'docker' });
  refs = {
    busybox: await pushImage(registry, 'test/busybox', 'latest', busybox),
    multiIndex: await pushImage(registry, 'test/multi', 'index', await multiPlatformIndex(multi)),
    multiDocker: await pushImage(registry, 'test/multi-docker', 'v1', multiDockerImage),
    multiDockerImage,
  };
});

afterAll(async () => {
  await registry?.stop();
});

describe('pull against berthd (all-in-one)', () => {
  let d: BerthdProcess;
  beforeAll(async () => {
    d = await startBerthd();
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('ctr images pull busybox: committed snapshot, usage, mounts, rootfs byte for byte', async () => {
    const pulled = await ctr(d.socket, ['images', 'pull', '--plain-http', refs.busybox], { timeoutMs: 120_000 });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(pulled.stdout).toMatch(/unpacking linux\/amd64 sha256:[0-9a-f]{64}\.\.\.\ndone/);
    const top = busybox.chainIds[0] ?? '';

    const ls = tableRows((await ctr(d.socket, ['snapshots', 'ls'])).stdout);
    expect(ls).toContainEqual([top, 'Committed']);
    const usage = tableRows((await ctr(d.socket, ['snapshots', 'usage', top])).stdout);
    // busybox: one ~2 MB binary plus an inode per applet symlink.
    expect(usage[0]?.[0]).toBe(top);
    expect(Number(usage[0]?.[usage[0].length - 1])).toBeGreaterThanOrEqual(busybox.stats.entries);

    const images = tableRows((await ctr(d.socket, ['images', 'ls'])).stdout);
    expect(images.find((r) => r[0] === refs.busybox)?.slice(1, 3)).toEqual([
      'application/vnd.oci.image.manifest.v1+json',
      busybox.manifest.digest,
    ]);

    expect(await rootfsDiffs(d.socket, 'default', busybox)).toEqual([]);
  });

  it('ctr images pull of a multi-platform index picks the host manifest; whiteouts, opaque dirs, links, owners all unpack right', async () => {
    const pulled = await ctr(d.socket, ['images', 'pull', '--plain-http', refs.multiIndex], { timeoutMs: 120_000 });
    expect(pulled.code, pulled.stderr).toBe(0);
    const ls = tableRows((await ctr(d.socket, ['snapshots', 'ls'])).stdout);
    for (const [i, c] of multi.chainIds.entries()) {
      expect(ls).toContainEqual(i === 0 ? [c, 'Committed'] : [c, multi.chainIds[i - 1], 'Committed']);
    }
    expect(await rootfsDiffs(d.socket, 'default', multi)).toEqual([]);
  });

  it('berth pull (Docker schema 2) into another namespace, then images ls, snapshots ls, rmi', async () => {
    const ns = 'berthcli';
    const r = await berth(d.socket, ['pull', '--plain-http', refs.multiDocker], ns);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`done: ${refs.multiDocker} ${refs.multiDockerImage.manifest.digest} (linux/amd64)`);
    expect(await rootfsDiffs(d.socket, ns, refs.multiDockerImage)).toEqual([]);

    const images = await berth(d.socket, ['images', 'ls'], ns);
    expect(images.stdout.split('\n')[0]).toMatch(/^REF\s+TYPE\s+DIGEST\s+SIZE\s+PLATFORMS\s+LABELS$/);
    expect(images.stdout).toMatch(
      new RegExp(
        `${refs.multiDocker} +application/vnd.docker.distribution.manifest.v2\\+json +${refs.multiDockerImage.manifest.digest} +1\\.5 MiB +linux/amd64 +-`,
      ),
    );
    // ctr sees what berth pulled, the same way.
    const ctrImages = tableRows((await ctr(d.socket, ['images', 'ls'], { namespace: ns })).stdout);
    expect(ctrImages.map((row) => row[0])).toEqual([refs.multiDocker]);

    const snaps = await berth(d.socket, ['snapshots', 'ls'], ns);
    for (const c of refs.multiDockerImage.chainIds) expect(snaps.stdout).toContain(c);

    expect((await berth(d.socket, ['rmi', refs.multiDocker], ns)).code).toBe(0);
    expect((await berth(d.socket, ['images', 'ls', '-q'], ns)).stdout).toBe('');
    const again = await berth(d.socket, ['rmi', refs.multiDocker], ns);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('not found');
  });

  it('resumes an interrupted layer download from the offset the content service kept (HTTP Range)', async () => {
    const ns = 'resume';
    // Its own image: content is shared across namespaces, so a blob pulled by another test would just be linked.
    const image = await singleLargeFileImage(3_000_000);
    const ref = await pushImage(registry, 'test/resume', 'v1', image);
    const node = connectNode(d.socket);
    try {
      const layer = image.layers[0];
      if (!layer) throw new Error('test image has no layers');
      // The first pull's registry connection dies after 600 kB of the big layer, and keeps dying on every
      // reconnect (the pull's own retries resume with Range), so the pull fails part way.
      const cut = 600_000;
      let sent = 0;
      let opened = 0;
      const breaking: typeof fetch = async (input, init) => {
        const res = await fetch(input, init);
        if (!String(input).endsWith(`/blobs/${layer.digest}`) || !res.body) return res;
        opened++;
        const reader = res.body.getReader();
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            const { done, value } = await reader.read();
            if (done) return c.close();
            if (sent + value.length > cut) {
              c.enqueue(value.subarray(0, Math.max(0, cut - sent)));
              sent = Math.max(sent, cut);
              c.error(new Error('connection reset by test'));
              return;
            }
            sent += value.length;
            c.enqueue(value);
          },
        });
        return new Response(body, { status: res.status, headers: res.headers });
      };
      await expect(pull(node, { ref, namespace: ns, plainHttp: true, fetch: breaking })).rejects.toThrow(
        /connection reset by test/,
      );
      // The first attempt plus three resumed ones within the pull.
      expect(opened).toBe(4);

      const events: PullEvent[] = [];
      const ranges: string[] = [];
      const watching: typeof fetch = (input, init) => {
        const range = new Headers(init?.headers).get('range');
        if (range && String(input).endsWith(`/blobs/${layer.digest}`)) ranges.push(range);
        return fetch(input, init);
      };
      const result = await pull(node, {
        ref,
        namespace: ns,
        plainHttp: true,
        fetch: watching,
        onEvent: (e) => events.push(e),
      });
      const resumed = events.find((e) => e.type === 'blob' && e.desc.digest === layer.digest && e.state === 'done');
      expect(resumed?.type === 'blob' ? resumed.resumedFrom : -1).toBe(cut);
      expect(ranges).toEqual([`bytes=${cut}-`]);
      expect(result.fetchedBytes).toBe(layer.size - cut);
      expect(await rootfsDiffs(d.socket, ns, image)).toEqual([]);
    } finally {
      node.close();
    }
  });

  it('pulls through a registry that demands bearer tokens', async () => {
    const authed = await startRegistry({ auth: 'token' });
    try {
      const ref = await pushImage(authed, 'private/busybox', 'latest', busybox);
      const anonymous = await fetch(`${authed.url}/v2/private/busybox/manifests/latest`);
      expect(anonymous.status).toBe(401);
      const r = await berth(d.socket, ['pull', '--plain-http', ref], 'tokens');
      expect(r.code, r.stderr).toBe(0);
      expect(
        authed.tokens?.requests.some(
          (q) => q.scope === 'repository:private/busybox:pull' && q.service === 'berth-test-registry',
        ),
      ).toBe(true);
      expect(await rootfsDiffs(d.socket, 'tokens', busybox)).toEqual([]);
    } finally {
      await authed.stop();
    }
  });
});

describe('berth pull against a private real containerd (wire compatibility)', () => {
  let c: ContainerdProcess;
  beforeAll(async () => {
    c = await startContainerd();
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('berth pull unpacks the same trees containerd would, and ctr lists the result', async () => {
    for (const [ref, image] of [
      [refs.busybox, busybox],
      [refs.multiIndex, multi],
    ] as const) {
      const r = await berth(c.socket, ['pull', '--plain-http', ref]);
      expect(r.code, r.stderr).toBe(0);
      expect(await rootfsDiffs(c.socket, 'default', image)).toEqual([]);
    }
    const images = tableRows((await ctr(c.socket, ['images', 'ls'])).stdout).map((row) => row[0]);
    expect(images).toEqual([refs.busybox, refs.multiIndex].sort());
    // containerd's own labels, as ctr would have set them: gc refs from the config to the unpacked snapshot.
    const content = (await ctr(c.socket, ['content', 'ls'])).stdout;
    expect(content).toContain(`containerd.io/gc.ref.snapshot.overlayfs=${multi.chainIds[multi.chainIds.length - 1]}`);
    expect(content).toContain(`containerd.io/gc.ref.content.m.0=${multi.manifest.digest}`);
    expect(content).toContain(`containerd.io/uncompressed=${multi.layers[0]?.diffId}`);
  });
});
