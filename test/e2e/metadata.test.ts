import { type Image, ImagesClient } from '@berth/proto/containerd/services/images/v1/images';
import { ociIndexType, tinyImage } from '@berth/testing/tiny-image';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr, tableRows } from './src/ctr.js';

const indexType = ociIndexType;
const digest = (c: string): string => `sha256:${c.repeat(64)}`;

/** Images are registered through our gRPC client: `ctr` can only create them by pulling or importing. */
function createImage(client: ImagesClient, ns: string, image: Image): Promise<void> {
  const md = new grpc.Metadata();
  md.set('containerd-namespace', ns);
  return new Promise((resolve, reject) => client.create({ image }, md, (err) => (err ? reject(err) : resolve())));
}

describe('ctr images and leases against berthd (all-in-one)', () => {
  let d: BerthdProcess;
  let images: ImagesClient;
  beforeAll(async () => {
    // ctr ingests without a lease: a collection the scheduler starts on its own may take a blob before the test
    // uses it (containerd #8570, the same on containerd). These tests are about images, not gc.
    d = await startBerthd({ config: { gc: { automatic: false } } });
    images = new ImagesClient(`unix://${d.socket}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    images?.close();
    await d?.stop();
  });

  it('ctr images ls / tag / label / rm behave as on containerd', async () => {
    const target = { mediaType: indexType, digest: digest('a'), size: 1234, annotations: {} };
    await createImage(images, 'default', {
      name: 'docker.io/library/busybox:1.36',
      labels: { origin: 'test' },
      target,
    });
    await createImage(images, 'default', {
      name: 'registry.test/app:v1',
      labels: {},
      target: { ...target, digest: digest('b') },
    });

    let ls = await ctr(d.socket, ['images', 'ls']);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout.split('\n')[0]).toMatch(/^REF\s+TYPE\s+DIGEST\s+SIZE\s+PLATFORMS\s+LABELS\s*$/);
    const rows = tableRows(ls.stdout);
    // Columns: ref, type, digest, size (value and unit), platforms, labels. Size and platforms come from the
    // manifests in Content; these records point at blobs that are not there, so ctr prints 0 and "-" (as
    // containerd does for such records) and logs why on stderr.
    expect(rows.map((r) => [r[0], r[1], r[2], r[5], r[6]])).toEqual([
      ['docker.io/library/busybox:1.36', indexType, digest('a'), '-', 'origin=test'],
      ['registry.test/app:v1', indexType, digest('b'), '-', '-'],
    ]);

    const quiet = await ctr(d.socket, ['images', 'ls', '-q']);
    expect(quiet.stdout.trim().split('\n')).toEqual(['docker.io/library/busybox:1.36', 'registry.test/app:v1']);
    const filtered = await ctr(d.socket, ['images', 'ls', '-q', 'labels.origin==test']);
    expect(filtered.stdout.trim()).toBe('docker.io/library/busybox:1.36');
    const badFilter = await ctr(d.socket, ['images', 'ls', 'name==']);
    expect(badFilter.code).not.toBe(0);
    expect(badFilter.stderr).toContain('ctr: failed to list images: filters: parse error');

    // tag: Get + Create under a lease created and removed by ctr.
    const tag = await ctr(d.socket, ['images', 'tag', 'registry.test/app:v1', 'registry.test/app:v2']);
    expect(tag.code, tag.stderr).toBe(0);
    expect(tag.stdout.trim()).toBe('registry.test/app:v2');
    const again = await ctr(d.socket, ['images', 'tag', 'registry.test/app:v1', 'registry.test/app:v2']);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('ctr: image "registry.test/app:v2": already exists');
    const forced = await ctr(d.socket, [
      'images',
      'tag',
      '--force',
      'docker.io/library/busybox:1.36',
      'registry.test/app:v2',
    ]);
    expect(forced.code, forced.stderr).toBe(0);
    ls = await ctr(d.socket, ['images', 'ls']);
    expect(tableRows(ls.stdout).find((r) => r[0] === 'registry.test/app:v2')?.[2]).toBe(digest('a'));
    const missing = await ctr(d.socket, ['images', 'tag', 'nope:1', 'nope:2']);
    expect(missing.stderr).toContain('ctr: image "nope:1": not found');
    expect((await ctr(d.socket, ['leases', 'ls', '-q'])).stdout.trim()).toBe('');

    // label: Update with labels.<key> masks; an empty value removes the label.
    const label = await ctr(d.socket, ['images', 'label', 'registry.test/app:v2', 'stage=prod', 'team=core']);
    expect(label.code, label.stderr).toBe(0);
    expect(label.stdout.trim().split(',').sort()).toEqual(['origin=test', 'stage=prod', 'team=core']);
    const clear = await ctr(d.socket, ['images', 'label', 'registry.test/app:v2', 'stage=']);
    expect(clear.stdout.trim().split(',').sort()).toEqual(['origin=test', 'team=core']);
    ls = await ctr(d.socket, ['images', 'ls', 'name==registry.test/app:v2']);
    expect(tableRows(ls.stdout).map((r) => r[6])).toEqual(['origin=test,team=core']);

    // rm: the namespace cannot go while it holds images; rm of a missing image only warns.
    const nsRm = await ctr(d.socket, ['namespaces', 'rm', 'default']);
    expect(nsRm.stderr).toContain('namespace "default" must be empty, but it still has images: failed precondition');
    const rm = await ctr(d.socket, ['images', 'rm', 'registry.test/app:v2', 'registry.test/app:v1']);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout.trim().split('\n')).toEqual(['registry.test/app:v2', 'registry.test/app:v1']);
    const rmMissing = await ctr(d.socket, ['images', 'rm', '--sync', 'registry.test/app:v1']);
    expect(rmMissing.code).toBe(0);
    expect(rmMissing.stderr).toContain('image not found');
    expect((await ctr(d.socket, ['images', 'ls', '-q'])).stdout.trim()).toBe('docker.io/library/busybox:1.36');
  });

  it('ctr images ls reads size and platforms from the manifests in Content', async () => {
    const image = tinyImage(Buffer.from('not really a layer, 40 bytes of content.'));
    const ns = ['--namespace', 'withcontent'];
    for (const [ref, blob] of image.blobs) {
      const r = await ctr(d.socket, [...ns, 'content', 'ingest', ref], { input: blob });
      expect(r.code, r.stderr).toBe(0);
    }
    await createImage(images, 'withcontent', {
      name: 'registry.test/real:1',
      labels: {},
      target: { ...image.index, annotations: {} },
    });
    const ls = await ctr(d.socket, [...ns, 'images', 'ls']);
    expect(ls.code, ls.stderr).toBe(0);
    expect(tableRows(ls.stdout)).toEqual([
      ['registry.test/real:1', indexType, image.index.digest, `${image.totalSize.toFixed(1)}`, 'B', 'linux/amd64', '-'],
    ]);
  });

  it('ctr leases create / ls / rm behave as on containerd', async () => {
    const ns = ['--namespace', 'leasetest'];
    const created = await ctr(d.socket, [...ns, 'leases', 'create']);
    expect(created.code, created.stderr).toBe(0);
    const generated = created.stdout.trim();
    expect(generated).toMatch(/^\d{1,9}-[A-Za-z0-9_-]{4}$/);

    const mine = await ctr(d.socket, [...ns, 'leases', 'create', '--id', 'build-1', '--expires', '0', 'purpose=test']);
    expect(mine.stdout.trim()).toBe('build-1');
    const dup = await ctr(d.socket, [...ns, 'leases', 'create', '--id', 'build-1']);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toContain('ctr: lease "build-1": already exists');

    const ls = await ctr(d.socket, [...ns, 'leases', 'ls']);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout.split('\n')[0]).toMatch(/^ID\s+CREATED AT\s+LABELS\s*$/);
    const rows = tableRows(ls.stdout);
    expect(rows.map((r) => r[0]).sort()).toEqual(['build-1', generated].sort());
    const expiry = rows.find((r) => r[0] === generated)?.[2] ?? '';
    // ctr asks for expiry 24 h from now, as an RFC 3339 label.
    const expireAt = Date.parse(expiry.replace(/^containerd\.io\/gc\.expire=/, ''));
    expect(Math.abs(expireAt - (Date.now() + 24 * 3600_000))).toBeLessThan(120_000);
    expect(rows.find((r) => r[0] === 'build-1')?.[2]).toBe('purpose=test');
    expect(Date.parse(rows.find((r) => r[0] === 'build-1')?.[1] ?? '')).toBeGreaterThan(Date.now() - 120_000);
    const filtered = await ctr(d.socket, [...ns, 'leases', 'ls', '-q', 'labels.purpose==test']);
    expect(filtered.stdout.trim()).toBe('build-1');

    const rm = await ctr(d.socket, [...ns, 'leases', 'rm', 'build-1']);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout.trim()).toBe('build-1');
    const rmAgain = await ctr(d.socket, [...ns, 'leases', 'rm', 'build-1']);
    expect(rmAgain.code).not.toBe(0);
    expect(rmAgain.stderr).toContain('ctr: lease "build-1": not found');
    const rmSync = await ctr(d.socket, [...ns, 'leases', 'rm', '--sync', generated]);
    expect(rmSync.code, rmSync.stderr).toBe(0);
    expect((await ctr(d.socket, [...ns, 'leases', 'ls', '-q'])).stdout.trim()).toBe('');
    // A namespace holding only leases can go, as on containerd.
    const nsRm = await ctr(d.socket, ['namespaces', 'rm', 'leasetest']);
    expect(nsRm.code, nsRm.stderr).toBe(0);
  });
});
