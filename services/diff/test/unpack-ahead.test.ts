/**
 * Unpack-ahead against real overlayfs snapshots: an image unpacked the way `ctr` does it (Prepare, Apply,
 * Commit, one layer after the other) with layers extracted ahead gives exactly the trees, times, whiteouts,
 * opaque markers and diffIDs that applying each layer in its own Apply gives; and what goes wrong ahead
 * (a guess not taken, a corrupt blob, another namespace) changes nothing a client sees.
 */
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Db, openDb } from '@berth/common/db';
import { nopLogger } from '@berth/common/log';
import { type Descriptor, MediaType } from '@berth/common/oci';
import { spreadsSubdirectories } from '@berth/common/spread-dirs';
import { type ContentClient, remoteContent } from '@berth/content/client';
import { createSnapshotsModule, type SnapshotsModule, type Snapshotter } from '@berth/snapshots';
import { type TempDir, tempDir } from '@berth/testing/tmp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUnpackAhead, type UnpackAhead } from '../src/ahead/unpack-ahead.js';
import { type Applier, createApplier } from '../src/apply/applier.js';
import type { Extract } from '../src/apply/extract.js';
import {
  buildTar,
  ctxIn,
  extractions,
  getXattr,
  gzip,
  type LayerEntry,
  mountedTree,
  sha256,
  startContentServer,
  treeOf,
  zstd,
} from './test-support/fixtures.js';

const t0 = new Date(1_600_000_000_000);
const layers: LayerEntry[][] = [
  [
    { name: 'etc/', type: 'directory', mode: 0o755 },
    { name: 'etc/passwd', mode: 0o644, body: 'root:x:0:0::/root:/bin/sh\n' },
    { name: 'etc/shadow', mode: 0o640, gid: 42, body: 'root:*:1::::::\n' },
    { name: 'keep/', type: 'directory', mode: 0o711, uid: 5, gid: 5, mtime: new Date(1_500_000_000_000) },
    { name: 'keep/deep/', type: 'directory', mode: 0o750, uid: 6, gid: 6, mtime: new Date(1_400_000_000_000) },
    { name: 'keep/k', mode: 0o644, body: 'k' },
    { name: 'opq/', type: 'directory', mode: 0o755 },
    { name: 'opq/x', mode: 0o644, body: 'old x' },
    { name: 'usr/', type: 'directory', mode: 0o755 },
    { name: 'usr/lib/', type: 'directory', mode: 0o755 },
    { name: 'usr/lib/libc.so', mode: 0o644, body: 'libc' },
    { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
    { name: 'var/', type: 'directory', mode: 0o755 },
    { name: 'var/old/', type: 'directory', mode: 0o755 },
    { name: 'var/old/a', mode: 0o644, body: 'a' },
  ],
  [
    // `keep` and `keep/deep` are implied: their attributes come from the layer below.
    { name: 'keep/deep/k2', mode: 0o644, body: 'k2' },
    { name: 'etc/.wh.shadow', mode: 0o644 },
    { name: 'var/.wh.old', mode: 0o644 },
    { name: 'opq/', type: 'directory', mode: 0o750 },
    { name: 'opq/.wh..wh..opq', mode: 0o644 },
    { name: 'opq/new', mode: 0o644, body: 'new' },
    { name: 'new/', type: 'directory', mode: 0o755 },
    { name: 'new/f', mode: 0o600, uid: 7, gid: 7, body: 'f' },
    { name: 'new/g', type: 'link', linkname: 'new/f' },
    { name: 'usr/lib/libz.so', mode: 0o644, body: 'libz' },
  ],
  [
    // Listed after a member below it: the listing's attributes win over the implied ones.
    { name: 'keep/k3', mode: 0o644, body: 'k3' },
    { name: 'keep/', type: 'directory', mode: 0o700, uid: 9, gid: 9 },
    { name: 'etc/passwd', mode: 0o644, body: 'root:x:0:0::/root:/bin/ash\n' },
  ],
  [
    // The whole lower tree hidden: the root itself opaque.
    { name: '.wh..wh..opq', mode: 0o644 },
    { name: 'only/', type: 'directory', mode: 0o755 },
    { name: 'only/file', mode: 0o644, body: 'alone' },
  ],
];

describe.each(extractions)('unpack-ahead (layers extracted %s)', (_, extractWith) => {
  let tmp: TempDir;
  let db: Db;
  let snaps: SnapshotsModule;
  let server: Awaited<ReturnType<typeof startContentServer>>;
  let content: ContentClient;
  let extract: Extract;
  let plain: Applier;
  let ahead: UnpackAhead;
  let withAhead: Applier;
  let descs: Descriptor[];
  let tars: Buffer[];

  beforeAll(async () => {
    tmp = tempDir('berth-ahead-');
    db = await openDb('pglite://memory');
    snaps = await createSnapshotsModule({
      db,
      bus: (await import('@berth/common/event-bus')).createInProcessBus(),
      log: nopLogger,
      root: join(tmp.path, 'snapshots'),
      node: 'n1',
    });
    server = await startContentServer(tmp.path);
    content = remoteContent(server.address);
    extract = extractWith({ content });
    plain = createApplier({ extract, tmpRoot: join(tmp.path, 'mnt') });
    ahead = await createUnpackAhead({ content, extract, root: join(tmp.path, 'ahead'), log: nopLogger, ttlMs: 1_500 });
    withAhead = createApplier({ extract, tmpRoot: join(tmp.path, 'mnt'), ahead });
    tars = await Promise.all(
      layers.map((entries) => buildTar(entries.map((e) => ({ mtime: t0, ...e }) as LayerEntry))),
    );
    const media = [MediaType.ociLayerGzip, MediaType.dockerLayerGzip, MediaType.ociLayerZstd, MediaType.ociLayer];
    const blobs = [gzip(tars[0] as Buffer), gzip(tars[1] as Buffer), zstd(tars[2] as Buffer), tars[3] as Buffer];
    descs = blobs.map((b, i) => ({ mediaType: media[i] ?? '', ...server.put(b) }));
  });
  afterAll(async () => {
    await ahead?.close();
    content?.close();
    await server?.close();
    await snaps?.close();
    await db?.close();
    await tmp?.remove();
  });

  const overlay = (): Snapshotter => {
    const s = snaps.snapshotters.get('overlayfs');
    if (!s) throw new Error('no overlayfs snapshotter');
    return s;
  };

  /** The image's manifest, labelled as a pull labels it (gc.ref.content.l.<i> → each layer). */
  function putManifest(layerDescs: readonly Descriptor[], tag: string): { digest: string; size: number } {
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: { mediaType: MediaType.ociConfig, digest: sha256(Buffer.from(tag)), size: tag.length },
        layers: layerDescs,
      }),
    );
    const labels = Object.fromEntries(layerDescs.map((d, i) => [`containerd.io/gc.ref.content.l.${i}`, d.digest]));
    return server.put(manifest, undefined, labels);
  }

  /** Prepare, Apply, Commit per layer, as ctr's unpack does; the diffIDs and each layer's upper dir. */
  async function unpack(applier: Applier, ns: string, image: readonly Descriptor[]) {
    const s = overlay();
    const ctx = ctxIn(ns);
    let parent = '';
    const diffs: Descriptor[] = [];
    for (const [i, d] of image.entries()) {
      const mounts = await s.prepare(ctx, `extract-${i}`, parent, {});
      diffs.push(await applier.apply(ctx, d, mounts));
      await s.commit(ctx, `layer-${i}`, `extract-${i}`, {});
      parent = `layer-${i}`;
    }
    return { s, ctx, diffs };
  }

  let views = 0;
  /** Each layer's merged view (with times) and its own upper dir (with whiteout devices and times). */
  async function trees(ns: string, count: number) {
    const s = overlay();
    const ctx = ctxIn(ns);
    const out = [];
    for (let i = 0; i < count; i++) {
      const view = await s.view(ctx, `view-${i}-${++views}`, `layer-${i}`, {});
      const top = view[0];
      const upper =
        top?.type === 'bind'
          ? top.source
          : (top?.options
              .find((o) => o.startsWith('lowerdir='))
              ?.slice('lowerdir='.length)
              .split(':')[0] ?? '');
      out.push({
        merged: await mountedTree(view, true),
        upper: await treeOf(upper, true),
        opaque: ['', 'opq', 'keep'].map((d) => getXattr(join(upper, d), 'trusted.overlay.opaque') ?? '-'),
      });
    }
    return out;
  }

  it('stages trees in a directory that spreads them over the file system (they become snapshots)', () => {
    expect(spreadsSubdirectories(join(tmp.path, 'ahead'))).toBe(true);
  });

  it('gives the trees, times, whiteouts, opaque markers and diffIDs of applying each layer itself', async () => {
    putManifest(descs, 'image-1');
    const inline = await unpack(plain, 'inline', descs);
    const before = { ...ahead.stats };
    const fast = await unpack(withAhead, 'ahead', descs);
    // Layers 1–3 were extracted while the one below each was applied, and each was taken by its Apply.
    expect({ started: ahead.stats.started - before.started, taken: ahead.stats.taken - before.taken }).toEqual({
      started: 3,
      taken: 3,
    });
    expect(fast.diffs).toEqual(inline.diffs);
    expect(fast.diffs.map((d) => d.digest)).toEqual(tars.map((t) => sha256(t)));
    const want = await trees('inline', descs.length);
    const got = await trees('ahead', descs.length);
    expect(got).toEqual(want);
    // The fixture shows what it means to: implied dirs from below, listing wins, whiteouts, opaque dirs.
    expect(want[1]?.merged['keep']).toContain('dir 0711 5:5 t=1500000000');
    expect(want[1]?.merged['keep/deep']).toContain('dir 0750 6:6 t=1400000000');
    expect(want[2]?.merged['keep']).toContain('dir 0700 9:9');
    expect(want[1]?.upper['etc/shadow']).toBe('char 0000 0:0 0');
    expect(want[1]?.opaque).toEqual(['-', 'y', '-']);
    expect(want[3]?.opaque).toEqual(['y', '-', '-']);
    expect(want[3]?.upper['only/file']).toContain('file 0644 0:0 5');
    expect(await readdir(join(tmp.path, 'ahead'))).toEqual([]);
    expect((await lstat(join(tmp.path, 'ahead'))).mode & 0o777, 'staged setuid binaries are not reachable').toBe(0o700);
  });

  it('removes a staged layer no Apply takes, and still applies it inline later', async () => {
    const image = descs.slice(0, 2);
    putManifest(image, 'image-2');
    const s = overlay();
    const ctx = ctxIn('untaken');
    const before = { ...ahead.stats };
    await withAhead.apply(ctx, image[0] as Descriptor, await s.prepare(ctx, 'extract-0', '', {}));
    await s.commit(ctx, 'layer-0', 'extract-0', {});
    for (let i = 0; i < 100 && ahead.stats.started === before.started; i++) await new Promise((r) => setTimeout(r, 20));
    expect(ahead.stats.started - before.started).toBe(1);
    for (let i = 0; i < 200 && ahead.stats.discarded === before.discarded; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(ahead.stats.discarded - before.discarded).toBe(1);
    expect(await readdir(join(tmp.path, 'ahead'))).toEqual([]);
    const d = await withAhead.apply(ctx, image[1] as Descriptor, await s.prepare(ctx, 'extract-1', 'layer-0', {}));
    expect(d.digest).toBe(sha256(tars[1] as Buffer));
    expect(ahead.stats.taken).toBe(before.taken);
  });

  it('a layer that fails ahead fails its own Apply as it would have, and another namespace never takes a tree', async () => {
    const corrupt = { mediaType: MediaType.ociLayerGzip, ...server.put(Buffer.from('not gzip at all')) };
    putManifest([descs[0] as Descriptor, corrupt], 'image-3');
    const s = overlay();
    const ctx = ctxIn('corrupt');
    await withAhead.apply(ctx, descs[0] as Descriptor, await s.prepare(ctx, 'extract-0', '', {}));
    await s.commit(ctx, 'layer-0', 'extract-0', {});
    const err = await withAhead
      .apply(ctx, corrupt, await s.prepare(ctx, 'extract-1', 'layer-0', {}))
      .catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^failed to decompress layer \(gzip\): /);

    // Staged in namespace `one` (which has the manifest's labels as every namespace of this store does):
    // an Apply in `two` extracts for itself.
    putManifest(descs.slice(0, 2), 'image-4');
    const one = ctxIn('one');
    await withAhead.apply(one, descs[0] as Descriptor, await s.prepare(one, 'extract-0', '', {}));
    const two = ctxIn('two');
    await s.commit(two, 'layer-0', await s.prepare(two, 'extract-0', '', {}).then(() => 'extract-0'), {});
    const before = ahead.stats.taken;
    await withAhead.apply(two, descs[1] as Descriptor, await s.prepare(two, 'extract-1', 'layer-0', {}));
    expect(ahead.stats.taken).toBe(before);
  });

  it('extracts layers written after their manifest as they commit, before any Apply, the bottom one too', async () => {
    // An instance of its own whose awaited layers do not expire while a loaded machine reads the manifest.
    const patient = await createUnpackAhead({
      content,
      extract,
      root: join(tmp.path, 'ahead-commits'),
      log: nopLogger,
    });
    const applier = createApplier({ extract, tmpRoot: join(tmp.path, 'mnt'), ahead: patient });
    try {
      const manifest = putManifest(descs, 'image-5');
      patient.committed('commits', manifest.digest, manifest.size);
      // The manifest is read in the background; its layers are awaited once it is. Until then a layer's
      // commit is only a blob that is no manifest. Up to 30 s: a loaded machine extracts two at a time.
      for (let i = 0; i < 1500 && patient.stats.started < 4; i++) {
        if (i % 10 === 0) for (const d of descs) patient.committed('commits', d.digest, d.size);
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(patient.stats.started).toBe(4);
      const fast = await unpack(applier, 'commits', descs);
      expect(patient.stats.taken).toBe(4);
      expect(patient.stats.started, 'nothing extracted twice').toBe(4);
      expect(fast.diffs.map((d) => d.digest)).toEqual(tars.map((t) => sha256(t)));
      expect(await trees('commits', descs.length)).toEqual(await trees('inline', descs.length));
    } finally {
      await patient.close();
    }
  });

  it('a bottom layer with whiteouts is applied by its own Apply (as deletions), not moved in with devices', async () => {
    const image = [descs[1] as Descriptor];
    const manifest = putManifest(image, 'image-6');
    ahead.committed('bottom', manifest.digest, manifest.size);
    await new Promise((r) => setTimeout(r, 300));
    const before = { ...ahead.stats };
    ahead.committed('bottom', image[0]?.digest ?? '', image[0]?.size ?? 0);
    for (let i = 0; i < 200 && ahead.stats.started === before.started; i++) await new Promise((r) => setTimeout(r, 20));
    expect(ahead.stats.started - before.started).toBe(1);
    await unpack(withAhead, 'bottom', image);
    const [{ upper } = { upper: {} }] = await trees('bottom', 1);
    expect(upper['etc/shadow'], 'no whiteout device in a bottom layer').toBeUndefined();
    expect(upper['keep/deep/k2']).toContain('file 0644');
  });

  it('gives up the extractions of a namespace once no Apply or Write of it runs (the client went away)', async () => {
    const root = join(tmp.path, 'ahead-idle');
    const quick = await createUnpackAhead({ content, extract, root, log: nopLogger, idleMs: 200 });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    try {
      const image = descs.slice(0, 2);
      const manifest = putManifest(image, 'image-8');
      const layer = image[1] as Descriptor;
      for (const ns of ['kept', 'gone']) {
        const write = quick.active(ns);
        quick.committed(ns, manifest.digest, manifest.size);
        await sleep(100);
        quick.committed(ns, layer.digest, layer.size);
        write();
      }
      // `kept` goes on pulling (an Apply runs); `gone` has no call left.
      const apply = quick.active('kept');
      for (let i = 0; i < 100 && quick.stats.discarded === 0; i++) await sleep(20);
      expect(quick.stats.started).toBe(2);
      expect(quick.stats.discarded).toBe(1);
      expect(await quick.take(ctxIn('gone'), layer)).toBeUndefined();
      const staged = await quick.take(ctxIn('kept'), layer);
      expect(staged?.diff.digest).toBe(sha256(tars[1] as Buffer));
      await staged?.release();
      apply();
      expect(await readdir(root)).toEqual([]);
    } finally {
      await quick.close();
    }
  });

  it('gives up the extractions of a namespace at once when its last call ended because the client went away', async () => {
    const root = join(tmp.path, 'ahead-gone');
    const patient = await createUnpackAhead({ content, extract, root, log: nopLogger, idleMs: 60_000 });
    try {
      const image = descs.slice(0, 2);
      const manifest = putManifest(image, 'image-9');
      const layer = image[1] as Descriptor;
      const apply = patient.active('cancelled');
      patient.committed('cancelled', manifest.digest, manifest.size);
      await new Promise((r) => setTimeout(r, 100));
      patient.committed('cancelled', layer.digest, layer.size);
      for (let i = 0; i < 50 && patient.stats.started === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(patient.stats.started).toBe(1);
      apply(true);
      for (let i = 0; i < 50 && patient.stats.discarded === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(patient.stats.discarded).toBe(1);
      expect(await readdir(root)).toEqual([]);
    } finally {
      await patient.close();
    }
  });

  it('extracts a layer from its Write as the bytes arrive, and drops the extraction of a write that is not committed', async () => {
    const image = descs.slice(0, 2);
    const manifest = putManifest(image, 'image-7');
    ahead.committed('tapped', manifest.digest, manifest.size);
    await new Promise((r) => setTimeout(r, 300));
    const layer = image[1] as Descriptor;
    const blob = gzip(tars[1] as Buffer);
    const before = { ...ahead.stats };
    const tap = ahead.opened('tapped', layer.digest, layer.size);
    expect(tap, 'an awaited layer is tapped').toBeDefined();
    for (let off = 0; off < blob.length; off += 100) await tap?.push(blob.subarray(off, off + 100));
    // Started before the write ends.
    expect(ahead.stats.started - before.started).toBe(1);
    tap?.end(true);
    ahead.committed('tapped', layer.digest, layer.size);
    const fast = await unpack(withAhead, 'tapped', image);
    expect(ahead.stats.started - before.started, 'nothing extracted twice').toBe(1);
    expect(ahead.stats.taken - before.taken).toBe(1);
    expect(fast.diffs.map((d) => d.digest)).toEqual([sha256(tars[0] as Buffer), sha256(tars[1] as Buffer)]);
    const want = await trees('inline', 2);
    expect(await trees('tapped', 2)).toEqual(want);

    // A write that ends without its commit (truncated, aborted): the extraction goes, the Apply does it itself.
    ahead.committed('untapped', manifest.digest, manifest.size);
    await new Promise((r) => setTimeout(r, 300));
    const broken = ahead.opened('untapped', layer.digest, layer.size);
    await broken?.push(blob.subarray(0, 1000));
    const discarded = ahead.stats.discarded;
    broken?.end(false);
    for (let i = 0; i < 100 && ahead.stats.discarded === discarded; i++) await new Promise((r) => setTimeout(r, 20));
    expect(ahead.stats.discarded - discarded).toBe(1);
    const again = await unpack(withAhead, 'untapped', image);
    expect(again.diffs.map((d) => d.digest)).toEqual([sha256(tars[0] as Buffer), sha256(tars[1] as Buffer)]);
    expect(await readdir(join(tmp.path, 'ahead'))).toEqual([]);
  });
});
