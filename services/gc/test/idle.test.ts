import { createHash } from 'node:crypto';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { connectNode } from '@berth/client';
import { backgroundContext } from '@berth/common/context';
import { nopLogger } from '@berth/common/log';
import { describe, expect, it } from 'vitest';
import { createCollector } from '../src/collector.js';
import { inProcessOwners } from '../src/index.js';
import { ownersOnPglite } from './owners-harness.js';

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/**
 * The idle trigger stands in for the deletion no call reports, an expiry: its run removes nothing unless
 * an expired lease, image or ingest made something collectable. Unreferenced content on an idle daemon
 * stays until a real trigger, as on containerd (`ctr content ingest` then `ctr content get` works).
 */
describe('gc idle runs', () => {
  const t = ownersOnPglite();

  it('keep unreferenced content until an expiry, then collect as any collection does', async () => {
    const ns = 'idle';
    const bg = backgroundContext(nopLogger, ns);
    const node = connectNode(t.owners.address);
    const write = async (text: string, lease?: string): Promise<string> => {
      const blob = Buffer.from(`${text} ${Date.now()}`);
      const digest = digestOf(blob);
      await node.content.ingest(
        { namespace: ns, ...(lease ? { lease } : {}), signal: new AbortController().signal },
        { open: async (offset) => ({ start: offset, body: [blob.subarray(offset)] }) },
        { ref: `ref-${text}`, desc: { mediaType: 'application/octet-stream', digest, size: blob.length } },
      );
      return digest;
    };
    const path = (d: string) => join(t.owners.dir.path, 'content', 'blobs', 'sha256', d.slice(7));
    const collector = createCollector({
      owners: inProcessOwners(t.db, t.owners.parts, { contentGraceMs: 0, deleteTimeoutMs: 5_000 }, nopLogger),
      log: nopLogger,
    });
    try {
      const loose = await write('loose');
      const quiet = await collector.collect({ onlyIfExpired: true });
      expect(quiet.removed).toEqual({ leases: 0, images: 0, blobs: 0, ingests: 0, snapshots: 0 });
      expect(await exists(path(loose))).toBe(true);

      const expiry = new Date(Date.now() + 1_000).toISOString();
      await t.owners.metadata.stores.leases.create(bg, 'short', { 'containerd.io/gc.expire': expiry });
      const held = await write('held', 'short');
      expect((await collector.collect({ onlyIfExpired: true })).removed.blobs).toBe(0);
      await new Promise((r) => setTimeout(r, 1_100));
      const expired = await collector.collect({ onlyIfExpired: true });
      expect(expired.removed.leases).toBe(1);
      expect(expired.removed.blobs).toBe(2);
      expect(await exists(path(held))).toBe(false);
      expect(await exists(path(loose))).toBe(false);
    } finally {
      node.close();
    }
  });
});
