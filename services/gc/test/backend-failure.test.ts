import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connectNode } from '@berth/client';
import { backgroundContext } from '@berth/common/context';
import { type Db, openDb } from '@berth/common/db';
import { nopLogger } from '@berth/common/log';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollector } from '../src/collector.js';
import { inProcessOwners } from '../src/index.js';
import { startOwners } from './owners-harness.js';

const exec = promisify(execFile);
const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/**
 * A backend delete that fails (here: the blob file is a mount point, so unlink gets EBUSY) is counted and
 * skipped: the collection still succeeds and frees everything else (containerd #3923, #9465); the next
 * collection frees what failed once it can.
 */
describe('gc with a failing backend delete', () => {
  let db: Db;
  let owners: Awaited<ReturnType<typeof startOwners>>;
  let mounted: string | undefined;

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test bind-mounts a file: it must run as root');
    db = await openDb('pglite://memory');
    owners = await startOwners(db);
  });
  afterAll(async () => {
    if (mounted) await exec('umount', [mounted]).catch(() => undefined);
    await owners?.close();
    await db?.close();
  });

  it('counts the failure, frees the rest, and frees the failed blob on a later collection', async () => {
    const ns = 'failing';
    const bg = backgroundContext(nopLogger, ns);
    const node = connectNode(owners.address);
    const digests: string[] = [];
    await owners.metadata.stores.leases.create(bg, 'l', {});
    for (const text of ['stuck blob', 'free blob']) {
      const blob = Buffer.from(`${text} ${Date.now()}`);
      const digest = digestOf(blob);
      digests.push(digest);
      await node.content.ingest(
        { namespace: ns, lease: 'l', signal: new AbortController().signal },
        { open: async (offset) => ({ start: offset, body: [blob.subarray(offset)] }) },
        { ref: `ref-${text}`, desc: { mediaType: 'application/octet-stream', digest, size: blob.length } },
      );
    }
    node.close();
    const path = (d: string) => join(owners.dir.path, 'content', 'blobs', 'sha256', d.slice(7));
    const [stuck, free] = digests as [string, string];
    await exec('mount', ['--bind', path(stuck), path(stuck)]);
    mounted = path(stuck);

    const collector = createCollector({
      owners: inProcessOwners(db, owners.parts, { contentGraceMs: 0, deleteTimeoutMs: 5_000 }, nopLogger),
      log: nopLogger,
    });
    await owners.metadata.stores.leases.delete(bg, 'l');
    const first = await collector.collect();
    expect(first.removed.blobs).toBe(2);
    expect(first.content.blobsDeleted).toBe(1);
    expect(first.content.failures).toBe(1);
    expect(await exists(path(free))).toBe(false);
    expect(await exists(path(stuck))).toBe(true);

    await exec('umount', [path(stuck)]);
    mounted = undefined;
    const second = await collector.collect();
    expect(second.content.blobsDeleted).toBe(1);
    expect(second.content.failures).toBe(0);
    expect(await exists(path(stuck))).toBe(false);
  });
});
