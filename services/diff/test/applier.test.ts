import { createHash, randomBytes } from 'node:crypto';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Db, openDb } from '@berth/common/db';
import { codeOf } from '@berth/common/errors';
import { createInProcessBus } from '@berth/common/event-bus';
import { withTempMount } from '@berth/common/mount';
import { MediaType } from '@berth/common/oci';
import { type ContentClient, remoteContent } from '@berth/content/client';
import { createSnapshotsModule, type SnapshotsModule, type Snapshotter } from '@berth/snapshots';
import { type TempDir, tempDir } from '@berth/testing/tmp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Applier, createApplier } from '../src/apply/applier.js';
import type { ExtractDeps } from '../src/apply/extract.js';
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

const busybox = randomBytes(200_000);
const short = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex').slice(0, 16);
const file = (mode: string, owner: string, body: Buffer | string, link?: string): string =>
  `file ${mode} ${owner} ${Buffer.byteLength(body)} ${short(body)}${link ? ` link=${link}` : ''}`;

const layer1: LayerEntry[] = [
  { name: 'bin/', type: 'directory', mode: 0o755 },
  { name: 'bin/busybox', mode: 0o755, body: busybox },
  { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
  { name: 'bin/ls', type: 'link', linkname: 'bin/busybox' },
  { name: 'dev/', type: 'directory', mode: 0o755 },
  { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
  { name: 'dev/loop0', type: 'block-device', mode: 0o660, gid: 6, devmajor: 7, devminor: 0 },
  { name: 'etc/', type: 'directory', mode: 0o755 },
  { name: 'etc/passwd', mode: 0o644, body: 'root:x:0:0::/root:/bin/sh\n' },
  { name: 'etc/shadow', mode: 0o640, gid: 42, body: 'root:*:1::::::\n' },
  {
    name: 'etc/note',
    mode: 0o644,
    body: 'x',
    pax: { 'SCHILY.xattr.user.note': 'hello', 'SCHILY.xattr.trusted.evil': 'y' },
  },
  { name: 'home/', type: 'directory', mode: 0o755 },
  { name: 'home/user/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000 },
  { name: 'home/user/.profile', mode: 0o600, uid: 1000, gid: 1000, body: 'export PS1=$\n' },
  { name: 'keep/', type: 'directory', mode: 0o711, uid: 5, gid: 5 },
  { name: 'keep/k', mode: 0o644, body: 'k' },
  { name: 'opq/', type: 'directory', mode: 0o755 },
  { name: 'opq/x', mode: 0o644, body: 'old x' },
  { name: 'opq/sub/', type: 'directory', mode: 0o755 },
  { name: 'opq/sub/y', mode: 0o644, body: 'old y' },
  { name: 'run/', type: 'directory', mode: 0o755 },
  { name: 'run/ctl', type: 'fifo', mode: 0o600 },
  { name: 'tmp/', type: 'directory', mode: 0o1777 },
  { name: 'usr/', type: 'directory', mode: 0o755 },
  { name: 'usr/bin/', type: 'directory', mode: 0o755 },
  { name: 'usr/bin/su', mode: 0o4755, body: 'su' },
  { name: 'usr/lib/', type: 'directory', mode: 0o755 },
  { name: 'usr/lib/libc.so', mode: 0o644, body: 'libc' },
  { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
  // Through a symlink that stays inside the root: lands in usr/lib.
  { name: 'lib/libz.so', mode: 0o644, body: 'libz' },
  { name: 'var/', type: 'directory', mode: 0o755 },
  { name: 'var/old/', type: 'directory', mode: 0o755 },
  { name: 'var/old/a', mode: 0o644, body: 'a' },
  { name: 'var/old/b', mode: 0o644, body: 'b' },
];

const expected1: Record<string, string> = {
  bin: 'dir 0755 0:0',
  'bin/busybox': file('0755', '0:0', busybox),
  'bin/ls': file('0755', '0:0', busybox, 'bin/busybox'),
  'bin/sh': 'symlink 0:0 -> busybox',
  dev: 'dir 0755 0:0',
  'dev/loop0': 'block 0660 0:6 1792',
  'dev/null': 'char 0666 0:0 259',
  etc: 'dir 0755 0:0',
  'etc/note': file('0644', '0:0', 'x'),
  'etc/passwd': file('0644', '0:0', 'root:x:0:0::/root:/bin/sh\n'),
  'etc/shadow': file('0640', '0:42', 'root:*:1::::::\n'),
  home: 'dir 0755 0:0',
  'home/user': 'dir 0700 1000:1000',
  'home/user/.profile': file('0600', '1000:1000', 'export PS1=$\n'),
  keep: 'dir 0711 5:5',
  'keep/k': file('0644', '0:0', 'k'),
  lib: 'symlink 0:0 -> usr/lib',
  opq: 'dir 0755 0:0',
  'opq/sub': 'dir 0755 0:0',
  'opq/sub/y': file('0644', '0:0', 'old y'),
  'opq/x': file('0644', '0:0', 'old x'),
  run: 'dir 0755 0:0',
  'run/ctl': 'fifo 0600 0:0',
  tmp: 'dir 1777 0:0',
  usr: 'dir 0755 0:0',
  'usr/bin': 'dir 0755 0:0',
  'usr/bin/su': file('4755', '0:0', 'su'),
  'usr/lib': 'dir 0755 0:0',
  'usr/lib/libc.so': file('0644', '0:0', 'libc'),
  'usr/lib/libz.so': file('0644', '0:0', 'libz'),
  var: 'dir 0755 0:0',
  'var/old': 'dir 0755 0:0',
  'var/old/a': file('0644', '0:0', 'a'),
  'var/old/b': file('0644', '0:0', 'b'),
};

const layer2: LayerEntry[] = [
  { name: 'etc/', type: 'directory', mode: 0o755 },
  { name: 'etc/.wh.shadow', mode: 0o644 },
  { name: 'etc/passwd', mode: 0o644, body: 'root:x:0:0::/root:/bin/ash\n' },
  { name: 'opq/', type: 'directory', mode: 0o750 },
  { name: 'opq/.wh..wh..opq', mode: 0o644 },
  { name: 'opq/new', mode: 0o644, body: 'new' },
  { name: 'var/.wh.old', mode: 0o644 },
  { name: 'new/', type: 'directory', mode: 0o755 },
  { name: 'new/f', mode: 0o600, uid: 7, gid: 7, body: 'f' },
  { name: 'new/g', type: 'link', linkname: 'new/f' },
  // No directory entries: parents are implied (and take the lower layer's attributes where it has them).
  { name: 'keep/k2', mode: 0o644, body: 'k2' },
  { name: 'newdir/deep/file', mode: 0o644, body: 'deep' },
  // A whiteout for something this layer does not remove from lower layers: nothing there, nothing to do.
  { name: 'etc/.wh.nothing', mode: 0o644 },
];

const expected2: Record<string, string> = (() => {
  const e = { ...expected1 };
  for (const k of ['etc/shadow', 'opq/x', 'opq/sub', 'opq/sub/y', 'var/old', 'var/old/a', 'var/old/b']) delete e[k];
  return {
    ...e,
    'etc/passwd': file('0644', '0:0', 'root:x:0:0::/root:/bin/ash\n'),
    opq: 'dir 0750 0:0',
    'opq/new': file('0644', '0:0', 'new'),
    new: 'dir 0755 0:0',
    'new/f': file('0600', '7:7', 'f'),
    'new/g': file('0600', '7:7', 'f', 'new/f'),
    'keep/k2': file('0644', '0:0', 'k2'),
    newdir: 'dir 0755 0:0',
    'newdir/deep': 'dir 0755 0:0',
    'newdir/deep/file': file('0644', '0:0', 'deep'),
  };
})();

describe.each(extractions)('Diff.Apply onto snapshots (layers extracted %s)', (_, extractWith) => {
  /** An applier that extracts every layer in its own Apply (no unpack-ahead). */
  const applierOver = (deps: ExtractDeps & { tmpRoot: string }) =>
    createApplier({ extract: extractWith(deps), tmpRoot: deps.tmpRoot });

  let tmp: TempDir;
  let db: Db;
  let snaps: SnapshotsModule;
  let server: Awaited<ReturnType<typeof startContentServer>>;
  let content: ContentClient;
  let applier: Applier;
  let tar1: Buffer;
  let tar2: Buffer;

  beforeAll(async () => {
    tmp = tempDir('berth-diff-');
    db = await openDb('pglite://memory');
    snaps = await createSnapshotsModule({
      db,
      bus: createInProcessBus(),
      log: (await import('@berth/common/log')).nopLogger,
      root: join(tmp.path, 'snapshots'),
      node: 'n1',
    });
    server = await startContentServer(tmp.path);
    content = remoteContent(server.address);
    applier = applierOver({ content, tmpRoot: join(tmp.path, 'mnt') });
    tar1 = await buildTar(layer1);
    tar2 = await buildTar(layer2);
  });
  afterAll(async () => {
    content?.close();
    await server?.close();
    await snaps?.close();
    await db?.close();
    await tmp?.remove();
  });

  const sn = (name: string): Snapshotter => {
    const s = snaps.snapshotters.get(name);
    if (!s) throw new Error(name);
    return s;
  };

  async function unpack(
    snapshotter: string,
    ns: string,
    layers: Array<{ blob: Buffer; mediaType: string; tar: Buffer }>,
  ) {
    const s = sn(snapshotter);
    const ctx = ctxIn(ns);
    let parent = '';
    const applied = [];
    for (const [i, l] of layers.entries()) {
      const { digest, size } = server.put(l.blob);
      const key = `extract-${i}`;
      const mounts = await s.prepare(ctx, key, parent, {});
      const d = await applier.apply(ctx, { mediaType: l.mediaType, digest, size }, mounts);
      expect(d).toEqual({ mediaType: MediaType.ociLayer, digest: sha256(l.tar), size: l.tar.length });
      applied.push(d);
      await s.commit(ctx, `layer-${i}`, key, {});
      parent = `layer-${i}`;
    }
    return { s, ctx, top: parent, applied };
  }

  it('overlayfs: gzip base + zstd layer with whiteouts, opaque dirs, links and devices give the exact tree', async () => {
    const { s, ctx } = await unpack('overlayfs', 'ov', [
      { blob: gzip(tar1), mediaType: MediaType.ociLayerGzip, tar: tar1 },
      { blob: zstd(tar2), mediaType: MediaType.ociLayerZstd, tar: tar2 },
    ]);
    expect(await mountedTree(await s.view(ctx, 'v1', 'layer-0', {}))).toEqual(expected1);
    expect(await mountedTree(await s.view(ctx, 'v2', 'layer-1', {}))).toEqual(expected2);

    // On overlayfs the deletions are overlay whiteouts in the layer's own directory.
    const [top] = await s.view(ctx, 'v3', 'layer-1', {});
    const upper =
      top?.options
        .find((o) => o.startsWith('lowerdir='))
        ?.slice('lowerdir='.length)
        .split(':')[0] ?? '';
    const wh = await lstat(join(upper, 'etc/shadow'));
    expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
    expect((await lstat(join(upper, 'var/old'))).isCharacterDevice()).toBe(true);
    expect(getXattr(join(upper, 'opq'), 'trusted.overlay.opaque')).toBe('y');
    expect(getXattr(join(upper, 'keep'), 'trusted.overlay.opaque')).toBeUndefined();
    expect((await readdir(upper)).sort()).toEqual(['etc', 'keep', 'new', 'newdir', 'opq', 'var']);
    // The implied parent `keep` copied the lower layer's attributes.
    expect(expected2['keep']).toBe('dir 0711 5:5');
  });

  it('keeps xattrs (never trusted.*) and file times', async () => {
    const { s, ctx } = await unpack('overlayfs', 'xa', [{ blob: tar1, mediaType: MediaType.ociLayer, tar: tar1 }]);
    const [m] = await s.view(ctx, 'v', 'layer-0', {});
    const dir = m?.source ?? '';
    expect(getXattr(join(dir, 'etc/note'), 'user.note')).toBe('hello');
    expect(getXattr(join(dir, 'etc/note'), 'trusted.evil')).toBeUndefined();
    const times = await treeOf(dir, true);
    expect(times['etc/passwd']).toContain('t=1600000000');
    expect(times['etc']).toContain('t=1600000000');
  });

  it('native: the same layers give the same tree, whiteouts applied as deletions', async () => {
    const { s, ctx } = await unpack('native', 'nat', [
      { blob: gzip(tar1), mediaType: MediaType.dockerLayerGzip, tar: tar1 },
      { blob: tar2, mediaType: MediaType.ociLayer, tar: tar2 },
    ]);
    const [m] = await s.view(ctx, 'v', 'layer-1', {});
    expect(await treeOf(m?.source ?? '')).toEqual(expected2);
  });

  it('refuses unknown media types and blobs that do not match their digest', async () => {
    const ctx = ctxIn('errs');
    const mounts = await sn('overlayfs').prepare(ctx, 'e1', '', {});
    const { digest, size } = server.put(tar1);
    const unknown = await applier
      .apply(ctx, { mediaType: 'application/x-unknown', digest, size }, mounts)
      .catch((e: unknown) => e);
    expect(codeOf(unknown)).toBe('not_implemented');
    expect((unknown as Error).message).toBe(
      'failed to get stream processor for application/x-unknown: no processor for media-type: not implemented',
    );
    const missing = await applier
      .apply(ctx, { mediaType: MediaType.ociLayer, digest: sha256(Buffer.from('nope')), size: 4 }, mounts)
      .catch((e: unknown) => e);
    expect(codeOf(missing)).toBe('not_found');
    const notGzip = await applier
      .apply(ctx, { mediaType: MediaType.ociLayerGzip, digest, size }, mounts)
      .catch((e: unknown) => e);
    expect((notGzip as Error).message).toMatch(/^failed to decompress layer \(gzip\): /);
    const liar = server.put(tar1, sha256(Buffer.from('other bytes')));
    const mismatch = await applier
      .apply(ctx, { mediaType: MediaType.ociLayer, ...liar }, mounts)
      .catch((e: unknown) => e);
    expect(codeOf(mismatch)).toBe('data_loss');
  });

  it('a long chain of layers still mounts (lowerdir beyond one page)', async () => {
    const layers = [];
    for (let i = 0; i < 120; i++) {
      const t = await buildTar([{ name: `f${String(i).padStart(3, '0')}`, mode: 0o644, body: `layer ${i}` }]);
      layers.push({ blob: t, mediaType: MediaType.ociLayer, tar: t });
    }
    const { s, ctx } = await unpack('overlayfs', 'long', layers);
    const mounts = await s.view(ctx, 'top', 'layer-119', {});
    const optionBytes = mounts[0]?.options.join(',').length ?? 0;
    expect(optionBytes).toBeGreaterThan(4096);
    const names = await withTempMount(mounts, join(tmp.path, 'mnt'), async (dir) => (await readdir(dir)).sort());
    expect(names).toHaveLength(120);
    expect(names[0]).toBe('f000');
    expect(names[119]).toBe('f119');
  }, 120_000);
});
