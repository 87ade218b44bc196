import { execFileSync } from 'node:child_process';
import { chmod, chown, link, mkdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { openDb } from '@berth/common/db';
import { codeOf } from '@berth/common/errors';
import { createInProcessBus } from '@berth/common/event-bus';
import { channelOptions, dialTarget, invoke } from '@berth/common/grpc-client';
import { type BoundServer, createServer, listen } from '@berth/common/grpc-server';
import { nopLogger } from '@berth/common/log';
import { type Mount as DifferMount, withTempMount } from '@berth/common/mount';
import { MediaType } from '@berth/common/oci';
import type { ServiceModule } from '@berth/common/service';
import { type ApplyResponse, DiffClient, type DiffResponse } from '@berth/proto/containerd/services/diff/v1/diff';
import type { Mount } from '@berth/proto/containerd/types/mount';
import { createSnapshotsModule } from '@berth/snapshots';
import { type TempDir, tempDir } from '@berth/testing/tmp';
import * as grpc from '@grpc/grpc-js';
import { getAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import * as tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uncompressedLabel } from '../src/compare/differ.js';
import { createDiffModule } from '../src/index.js';
import { ctxIn, mountedTree, sha256, startContentServer, treeOf } from './test-support/fixtures.js';

type AnyMount = DifferMount;
const bind = (source: string, ...options: string[]): AnyMount => ({ type: 'bind', source, options });
const wire = (ms: readonly AnyMount[]): Mount[] => ms.map((m) => ({ ...m, target: '', options: [...m.options] }));
const t0 = new Date(1_600_000_000_000);

/** The member names of a tar, in order, with their type. */
async function members(layer: Buffer): Promise<string[]> {
  const extract = tar.extract();
  const names: string[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      names.push(`${entry.header.type} ${entry.header.name}`);
      entry.resume();
    }
  })();
  extract.end(layer);
  await done;
  return names;
}

/** The PAX records of member `name` of a tar. */
async function paxOf(layer: Buffer, name: string): Promise<Record<string, string> | undefined> {
  const extract = tar.extract();
  let found: Record<string, string> | undefined;
  const done = (async () => {
    for await (const entry of extract) {
      if (entry.header.name === name) found = { ...(entry.header.pax ?? {}) };
      entry.resume();
    }
  })();
  extract.end(layer);
  await done;
  return found;
}

async function makeLower(root: string): Promise<void> {
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  await writeFile(join(root, 'etc/shadow'), 'root:*:1::::::\n');
  await writeFile(join(root, 'etc/hosts'), '127.0.0.1 localhost\n');
  await mkdir(join(root, 'var/old/deep'), { recursive: true });
  await writeFile(join(root, 'var/old/a'), 'a');
  await writeFile(join(root, 'var/old/deep/b'), 'b');
  await mkdir(join(root, 'bin'));
  await writeFile(join(root, 'bin/busybox'), Buffer.alloc(70_000, 7), { mode: 0o755 });
  await symlink('busybox', join(root, 'bin/sh'));
  await mkdir(join(root, 'usr/lib'), { recursive: true });
  await writeFile(join(root, 'usr/lib/libc.so'), 'libc');
  // Whole-second times, as an unpacked layer has them.
  execFileSync('find', [root, '-exec', 'touch', '-h', '-d', '@1600000000', '{}', '+']);
}

/** upper = lower with additions, a modification, deletions (a file and a whole directory) and new links. */
async function makeUpper(lower: string, root: string): Promise<void> {
  execFileSync('cp', ['-a', `${lower}/.`, root]);
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/ash\n');
  await rm(join(root, 'etc/shadow'));
  await chmod(join(root, 'etc/hosts'), 0o600);
  await rm(join(root, 'var/old'), { recursive: true });
  await mkdir(join(root, 'new/sub'), { recursive: true });
  await writeFile(join(root, 'new/f'), 'f', { mode: 0o640 });
  await chown(join(root, 'new/f'), 7, 8);
  await link(join(root, 'new/f'), join(root, 'new/g'));
  await writeFile(join(root, 'new/sub/deep'), 'deep');
  await utimes(join(root, 'new/sub/deep'), t0, t0);
  await symlink('busybox', join(root, 'bin/ls'));
  await rm(join(root, 'bin/sh'));
  await symlink('/bin/busybox', join(root, 'bin/sh'));
  execFileSync('mkfifo', ['-m', '0600', join(root, 'new/ctl')]);
}

describe('Diff.Diff through the gRPC server', () => {
  let tmp: TempDir;
  let content: Awaited<ReturnType<typeof startContentServer>>;
  let module: ServiceModule;
  let bound: BoundServer;
  let client: DiffClient;
  let lower: string;
  let upper: string;
  const ctx = ctxIn('diffs');

  const diff = (
    left: readonly AnyMount[],
    right: readonly AnyMount[],
    mediaType = '',
    labels: Record<string, string> = {},
  ) =>
    invoke<DiffResponse>(
      (md, o, cb) => client.diff({ left: wire(left), right: wire(right), mediaType, ref: '', labels }, md, o, cb),
      ctx,
    );
  const apply = (desc: { mediaType: string; digest: string; size: number }, mounts: readonly AnyMount[]) =>
    invoke<ApplyResponse>(
      (md, o, cb) =>
        client.apply({ diff: { ...desc, annotations: {} }, mounts: wire(mounts), payloads: {} }, md, o, cb),
      ctx,
    );

  beforeAll(async () => {
    tmp = tempDir('berth-differ-');
    content = await startContentServer(tmp.path);
    module = await createDiffModule({
      log: nopLogger,
      contentAddress: content.address,
      tmpRoot: join(tmp.path, 'mnt'),
    });
    const server = createServer();
    for (const s of module.grpc) server.addService(s.definition, s.implementation);
    bound = await listen(server, join(tmp.path, 'diff.sock'));
    client = new DiffClient(dialTarget(bound.address), grpc.credentials.createInsecure(), channelOptions);
    lower = join(tmp.path, 'lower');
    upper = join(tmp.path, 'upper');
    await makeLower(lower);
    await makeUpper(lower, upper);
  });
  afterAll(async () => {
    client?.close();
    await bound?.close(0);
    await module?.close();
    await content?.close();
    await tmp?.remove();
  });

  it('writes a gzip layer that Apply turns lower into upper with, labelled with its diffID', async () => {
    const res = await diff([bind(lower, 'rbind')], [bind(upper, 'rbind')], '', { 'x.test/who': 'me' });
    const d = res.diff;
    if (!d) throw new Error('no descriptor');
    expect(d.mediaType).toBe(MediaType.ociLayerGzip);
    const stored = content.get(d.digest);
    if (!stored) throw new Error(`${d.digest} not in content`);
    expect(stored.blob.length).toBe(d.size);
    const layer = gunzipSync(stored.blob);
    expect(stored.labels).toEqual({ [uncompressedLabel]: sha256(layer), 'x.test/who': 'me' });

    // Only what changed, parents first, deletions as whiteouts (nothing below a deleted directory).
    expect(await members(layer)).toEqual([
      'directory bin/',
      'symlink bin/ls',
      'symlink bin/sh',
      'directory etc/',
      'file etc/hosts',
      'file etc/passwd',
      'file etc/.wh.shadow',
      'directory new/',
      'fifo new/ctl',
      'file new/f',
      'link new/g',
      'directory new/sub/',
      'file new/sub/deep',
      'directory var/',
      'file var/.wh.old',
    ]);

    const target = join(tmp.path, 'applied');
    execFileSync('cp', ['-a', lower, target]);
    const applied = await apply(d, [bind(target, 'rbind', 'rw')]);
    expect(applied.applied).toMatchObject({ mediaType: MediaType.ociLayer, digest: sha256(layer), size: layer.length });
    const want = await treeOf(upper);
    expect(want['new/g']).toBe(`${want['new/f']} link=new/f`);
    expect(await treeOf(target)).toEqual(want);
    // Times carry over too, except on the directories the whiteouts were applied in: Apply (delete mode)
    // removes the whited-out entries after setting their directory's time.
    const untimed = (t: Record<string, string>): Record<string, string> => ({
      ...t,
      etc: (t['etc'] ?? '').replace(/ t=\d+$/, ''),
      var: (t['var'] ?? '').replace(/ t=\d+$/, ''),
    });
    expect(untimed(await treeOf(target, true))).toEqual(untimed(await treeOf(upper, true)));
  });

  it('writes an uncompressed layer when asked, and nothing for equal trees', async () => {
    const res = await diff([bind(lower)], [bind(lower)], MediaType.ociLayer);
    const d = res.diff;
    if (!d) throw new Error('no descriptor');
    const stored = content.get(d.digest);
    expect(stored?.blob).toEqual(Buffer.alloc(1024));
    expect(d).toMatchObject({ mediaType: MediaType.ociLayer, digest: sha256(Buffer.alloc(1024)), size: 1024 });
    expect(stored?.labels[uncompressedLabel]).toBe(d.digest);
  });

  it('refuses other media types (not_implemented) and empty mounts (invalid_argument), leaving no mounts', async () => {
    const zstd = await diff([bind(lower)], [bind(upper)], MediaType.ociLayerZstd).catch((e: unknown) => e);
    expect(codeOf(zstd)).toBe('not_implemented');
    expect((zstd as Error).message).toBe(`unsupported diff media type: ${MediaType.ociLayerZstd}: not implemented`);
    const empty = await diff([], [bind(upper)]).catch((e: unknown) => e);
    expect(codeOf(empty)).toBe('invalid_argument');
    const missing = await diff([bind(lower)], [bind(join(tmp.path, 'nope'))]).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(Error);
    const mounts = execFileSync('cat', ['/proc/self/mounts']).toString();
    expect(mounts).not.toContain(join(tmp.path, 'mnt'));
  });

  it('compares and carries file capabilities (security.capability) as containerd does', async () => {
    const capA = Buffer.from('0100000200200000000000000000000000000000', 'hex'); // cap_net_raw
    const capB = Buffer.from('0100000200300000000000000000000000000000', 'hex'); // + cap_net_bind_service
    const lo = join(tmp.path, 'cap-lower');
    const up = join(tmp.path, 'cap-upper');
    await mkdir(join(lo, 'bin'), { recursive: true });
    await writeFile(join(lo, 'bin/ping'), 'ping');
    await writeFile(join(lo, 'bin/same'), 'same');
    await writeFile(join(lo, 'bin/plain'), 'plain');
    setAttributeSync(join(lo, 'bin/ping'), 'security.capability', capA);
    setAttributeSync(join(lo, 'bin/same'), 'security.capability', capA);
    execFileSync('find', [lo, '-exec', 'touch', '-h', '-d', '@1600000000', '{}', '+']);
    execFileSync('cp', ['-a', lo, up]);
    // Only the capability changes: same size, mode, owner and mtime (setting an xattr moves only ctime).
    setAttributeSync(join(up, 'bin/ping'), 'security.capability', capB);
    setAttributeSync(join(up, 'bin/plain'), 'security.capability', capA);
    const d = (await diff([bind(lo)], [bind(up)], MediaType.ociLayer)).diff;
    if (!d) throw new Error('no descriptor');
    const layer = content.get(d.digest)?.blob ?? Buffer.alloc(0);
    expect(await members(layer)).toEqual(['directory bin/', 'file bin/ping', 'file bin/plain']);
    expect(await paxOf(layer, 'bin/ping')).toMatchObject({
      'SCHILY.xattr.security.capability': capB.toString('latin1'),
    });
    expect(await paxOf(layer, 'bin/plain')).toMatchObject({
      'SCHILY.xattr.security.capability': capA.toString('latin1'),
    });
    // And Apply puts it back.
    const target = join(tmp.path, 'cap-applied');
    execFileSync('cp', ['-a', lo, target]);
    await apply(d, [bind(target, 'rbind', 'rw')]);
    expect(getAttributeSync(join(target, 'bin/ping'), 'security.capability')).toEqual(capB);
    expect(getAttributeSync(join(target, 'bin/plain'), 'security.capability')).toEqual(capA);
  });

  it('overlayfs: diffs a committed parent against an active snapshot, and the layer recreates it', async () => {
    const db = await openDb('pglite://memory');
    const snaps = await createSnapshotsModule({
      db,
      bus: createInProcessBus(),
      log: nopLogger,
      root: join(tmp.path, 'snapshots'),
      node: 'n1',
    });
    try {
      const s = snaps.snapshotters.get('overlayfs');
      if (!s) throw new Error('no overlayfs snapshotter');
      const mnt = join(tmp.path, 'mnt');
      await withTempMount(await s.prepare(ctx, 'base-w', '', {}), mnt, async (dir) => {
        execFileSync('cp', ['-a', `${lower}/.`, dir]);
      });
      await s.commit(ctx, 'base', 'base-w', {});
      const work = await s.prepare(ctx, 'work', 'base', {});
      expect(work[0]?.options.some((o) => o.startsWith('upperdir='))).toBe(true);
      await withTempMount(work, mnt, async (dir) => {
        await rm(join(dir, 'var/old'), { recursive: true });
        await rm(join(dir, 'etc/shadow'));
        await writeFile(join(dir, 'etc/passwd'), 'changed\n');
        await writeFile(join(dir, 'added'), 'added');
      });
      const res = await diff(await s.view(ctx, 'base-v', 'base', {}), work);
      const d = res.diff;
      if (!d) throw new Error('no descriptor');
      const layer = gunzipSync(content.get(d.digest)?.blob ?? Buffer.alloc(0));
      expect(await members(layer)).toEqual([
        'file added',
        'directory etc/',
        'file etc/passwd',
        'file etc/.wh.shadow',
        'directory var/',
        'file var/.wh.old',
      ]);
      const again = await s.prepare(ctx, 'again', 'base', {});
      await apply(d, again);
      expect(await mountedTree(again, true)).toEqual(await mountedTree(work, true));
    } finally {
      await snaps.close();
      await db.close();
    }
  });
});
