import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ApplyResponse, DiffClient } from '@berth/proto/containerd/services/diff/v1/diff';
import type { Mount } from '@berth/proto/containerd/types/mount';
import { eventually } from '@berth/testing/async-checks';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr, tableRows } from './src/ctr.js';
import { mountAsPrinted } from './src/mounts.js';

describe('ctr snapshots against berthd (all-in-one)', () => {
  let d: BerthdProcess;
  let mnt: string;
  beforeAll(async () => {
    // ctr ingests without a lease: a collection the scheduler starts on its own may take a blob before the test
    // uses it (containerd #8570, the same on containerd). These tests are about content and snapshots, not gc.
    d = await startBerthd({ config: { gc: { automatic: false } } });
    mnt = await mkdtemp('/tmp/berth-e2e-mnt-');
  });
  afterAll(async () => {
    await d.stop();
    await rm(mnt, { recursive: true, force: true });
  });

  const run = async (args: string[], namespace?: string): Promise<string> => {
    const r = await ctr(d.socket, args, namespace ? { namespace } : {});
    expect(r.code, `ctr ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  it('prepare, mounts, write, commit, child sees the file, view, ls, info, usage, rm', async () => {
    expect(await run(['snapshots', 'prepare', 'base', ''])).toBe('');
    const baseMount = (await run(['snapshots', 'mounts', mnt, 'base'])).trim();
    expect(baseMount).toMatch(new RegExp(`^mount -t bind /\\S+/overlayfs/\\d+/fs ${mnt} -o rw,rbind$`));
    mountAsPrinted(baseMount);
    try {
      await writeFile(join(mnt, 'hello.txt'), 'hello from base');
    } finally {
      execFileSync('umount', [mnt]);
    }
    await run(['snapshots', 'commit', 'layer1', 'base']);

    await run(['snapshots', 'prepare', 'child', 'layer1']);
    const childMount = (await run(['snapshots', 'mounts', mnt, 'child'])).trim();
    expect(childMount).toMatch(/^mount -t overlay overlay \S+ -o index=off,workdir=\S+,upperdir=\S+,lowerdir=\S+$/);
    mountAsPrinted(childMount);
    try {
      expect(await readFile(join(mnt, 'hello.txt'), 'utf8')).toBe('hello from base');
      await writeFile(join(mnt, 'child.txt'), 'from child');
    } finally {
      execFileSync('umount', [mnt]);
    }
    await run(['snapshots', 'commit', 'layer2', 'child']);

    await run(['snapshots', 'view', 'look', 'layer2']);
    const viewMount = (await run(['snapshots', 'mounts', mnt, 'look'])).trim();
    expect(viewMount).toMatch(/^mount -t overlay overlay \S+ -o index=off,lowerdir=\S+:\S+$/);
    mountAsPrinted(viewMount);
    try {
      expect((await readdir(mnt)).sort()).toEqual(['child.txt', 'hello.txt']);
    } finally {
      execFileSync('umount', [mnt]);
    }

    const ls = tableRows(await run(['snapshots', 'ls']));
    expect(ls).toEqual([
      ['layer1', 'Committed'],
      ['layer2', 'layer1', 'Committed'],
      ['look', 'layer2', 'View'],
    ]);

    const info = JSON.parse(await run(['snapshots', 'info', 'layer2'])) as Record<string, unknown>;
    expect(info).toMatchObject({ Kind: 'Committed', Name: 'layer2', Parent: 'layer1' });

    const usage = tableRows(await run(['snapshots', 'usage']));
    expect(usage.map((r) => r[0])).toEqual(['layer1', 'layer2', 'look']);
    expect(usage.find((r) => r[0] === 'layer2')?.slice(-1)).toEqual(['2']);
    const one = tableRows(await run(['snapshots', 'usage', 'layer1']));
    expect(one).toHaveLength(1);

    const busy = await ctr(d.socket, ['snapshots', 'rm', 'layer1']);
    expect(busy.code).not.toBe(0);
    expect(busy.stderr).toContain('cannot remove snapshot with child: failed precondition');

    await run(['snapshots', 'rm', 'look', 'layer2', 'layer1']);
    expect(tableRows(await run(['snapshots', 'ls']))).toEqual([]);
  });

  it('answers the unpack sequence ctr uses: Stat not found, Prepare extract key, Commit chain id', async () => {
    const chainId = 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
    const missing = await ctr(d.socket, ['snapshots', 'info', chainId]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain(`ctr: snapshot ${chainId} does not exist: not found`);
    const extractKey = `extract-1700000000000000000-AbCd ${chainId}`;
    await run(['snapshots', 'prepare', extractKey, '']);
    await run(['snapshots', 'commit', chainId, extractKey]);
    expect(JSON.parse(await run(['snapshots', 'info', chainId]))).toMatchObject({ Kind: 'Committed', Name: chainId });
    const dup = await ctr(d.socket, ['snapshots', 'prepare', 'x', 'nope']);
    expect(dup.stderr).toContain('parent snapshot nope does not exist: not found');
    await run(['snapshots', 'rm', chainId]);
  });

  it('keeps namespaces apart and registers the namespace with metadata', async () => {
    await run(['snapshots', 'prepare', 'shared-key', ''], 'team-a');
    await run(['snapshots', 'prepare', 'shared-key', ''], 'team-b');
    const dup = await ctr(d.socket, ['snapshots', 'prepare', 'shared-key', ''], { namespace: 'team-a' });
    expect(dup.stderr).toContain('snapshot "shared-key": already exists');
    const nsList = (await run(['namespaces', 'ls', '-q'])).split('\n');
    expect(nsList).toEqual(expect.arrayContaining(['team-a', 'team-b']));
    const rm1 = await ctr(d.socket, ['namespaces', 'rm', 'team-a']);
    expect(rm1.code).not.toBe(0);
    expect(rm1.stderr).toContain('snapshots on "overlayfs" snapshotter');
    await run(['snapshots', 'rm', 'shared-key'], 'team-a');
    expect(tableRows(await run(['snapshots', 'ls'], 'team-b'))).toEqual([['shared-key', 'Active']]);
    await run(['namespaces', 'rm', 'team-a']);
    await run(['snapshots', 'rm', 'shared-key'], 'team-b');
  });

  it('unpacks layers as ctr does: content ingest, Stat not found, Prepare, Diff.Apply, Commit chain id', async () => {
    const work = await mkdtemp('/tmp/berth-e2e-layers-');
    try {
      const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
      // Layer 1 (gzip) and layer 2 (zstd, deleting a file of layer 1), made by GNU tar.
      await mkdir(join(work, 'l1/etc'), { recursive: true });
      await writeFile(join(work, 'l1/etc/hello'), 'hello\n');
      await writeFile(join(work, 'l1/etc/gone'), 'bye\n');
      await symlink('hello', join(work, 'l1/etc/link'));
      await mkdir(join(work, 'l2/etc'), { recursive: true });
      await writeFile(join(work, 'l2/etc/.wh.gone'), '');
      await writeFile(join(work, 'l2/etc/new'), 'new\n');
      const tar1 = execFileSync('tar', ['-C', join(work, 'l1'), '--numeric-owner', '-cf', '-', 'etc']);
      const tar2 = execFileSync('tar', ['-C', join(work, 'l2'), '--numeric-owner', '-cf', '-', 'etc']);
      const layers = [
        {
          blob: execFileSync('gzip', ['-c'], { input: tar1 }),
          mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
          tar: tar1,
        },
        {
          blob: execFileSync('zstd', ['-q', '-c'], { input: tar2 }),
          mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd',
          tar: tar2,
        },
      ];
      const client = new DiffClient(`unix://${d.socket}`, grpc.credentials.createInsecure());
      const md = new grpc.Metadata();
      md.set('containerd-namespace', 'default');
      try {
        let parent = '';
        for (const [i, l] of layers.entries()) {
          const digest = sha(l.blob);
          const ingest = await ctr(
            d.socket,
            ['content', 'ingest', '--expected-digest', digest, '--expected-size', String(l.blob.length), `layer-${i}`],
            { input: l.blob },
          );
          expect(ingest.code, ingest.stderr).toBe(0);
          // chainID(n) = digest(chainID(n-1) + " " + diffID(n)); the first layer's is its diffID.
          const diffId = sha(l.tar);
          const chainId = parent === '' ? diffId : sha(Buffer.from(`${parent} ${diffId}`));
          const stat = await ctr(d.socket, ['snapshots', 'info', chainId]);
          expect(stat.stderr).toContain(`snapshot ${chainId} does not exist: not found`);
          const key = `extract-${Date.now()}000000-e2e${i} ${chainId}`;
          const mounts = (
            JSON.parse(await run(['snapshots', 'prepare', '--mounts', key, parent])) as Array<{
              Type: string;
              Source: string;
              Options: string[];
            }>
          ).map((m): Mount => ({ type: m.Type, source: m.Source, target: '', options: m.Options }));
          const applied = await new Promise<ApplyResponse>((resolve, reject) =>
            client.apply(
              { diff: { mediaType: l.mediaType, digest, size: l.blob.length, annotations: {} }, mounts, payloads: {} },
              md,
              (e, r) => (e ? reject(e) : resolve(r)),
            ),
          );
          expect(applied.applied).toEqual({
            mediaType: 'application/vnd.oci.image.layer.v1.tar',
            digest: diffId,
            size: l.tar.length,
            annotations: {},
          });
          await run(['snapshots', 'commit', chainId, key]);
          parent = chainId;
        }
        await run(['snapshots', 'view', 'rootfs-view', parent]);
        mountAsPrinted((await run(['snapshots', 'mounts', mnt, 'rootfs-view'])).trim());
        try {
          expect((await readdir(join(mnt, 'etc'))).sort()).toEqual(['hello', 'link', 'new']);
          expect(await readFile(join(mnt, 'etc/link'), 'utf8')).toBe('hello\n');
        } finally {
          execFileSync('umount', [mnt]);
        }
      } finally {
        client.close();
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  it('serves the native snapshotter too', async () => {
    await run(['snapshots', '--snapshotter', 'native', 'prepare', 'n1', '']);
    const line = (await run(['snapshots', '--snapshotter', 'native', 'mounts', mnt, 'n1'])).trim();
    expect(line).toMatch(/^mount -t bind \/\S+\/native\/\d+ \S+ -o rbind,rw$/);
    const source = line.split(' ')[3] ?? '';
    expect(existsSync(source)).toBe(true);
    await run(['snapshots', '--snapshotter', 'native', 'rm', 'n1']);
    // The directory goes in the background once the record is gone (a loaded machine sees it after ctr returns).
    await eventually(async () => expect(existsSync(source)).toBe(false));
    const bad = await ctr(d.socket, ['snapshots', '--snapshotter', 'zfs', 'ls']);
    expect(bad.stderr).toContain('snapshotter not loaded: zfs: invalid argument');
  });
});
