import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { type Db, openDb, type Queryable } from '@berth/common/db';
import { createInProcessBus } from '@berth/common/event-bus';
import { createServer, listen } from '@berth/common/grpc-server';
import { localCall } from '@berth/common/local-call';
import { nopLogger } from '@berth/common/log';
import { registerAll } from '@berth/common/service';
import { type BlobBackendConfig, createContentModule } from '@berth/content';
import { createMetadataModule } from '@berth/metadata';
import { type MetadataCalls, metadataClient } from '@berth/metadata/client';
import { createSnapshotsModule } from '@berth/snapshots';
import { tempDir } from '@berth/testing/tmp';
import { afterAll, beforeAll } from 'vitest';
import type { LocalOwnerParts } from '../src/index.js';

/** Runs around every lease call content and snapshots make (a test forces a collection there). */
export type LeaseCallHook = (call: 'add' | 'delete', resource: { id: string; type: string }) => Promise<void>;

/**
 * The three owner modules over one database, as all-in-one builds them, for the collector to drive; content
 * and snapshots reach metadata in process through a peer that runs `hooks.around` before and after each
 * lease call, and the modules are served on a unix socket (`address`).
 */
export async function startOwners(db: Db, hooks: { around?: LeaseCallHook } = {}, backend?: BlobBackendConfig) {
  const dir = tempDir('berth-gc-');
  const bus = createInProcessBus();
  const metadata = await createMetadataModule({ db, bus, log: nopLogger });
  const around: LeaseCallHook = (call, r) => hooks.around?.(call, r) ?? Promise.resolve();
  const calls: MetadataCalls = {
    createNamespace: (ctx, name) =>
      localCall(ctx, async (c) => {
        await metadata.stores.namespaces.create(c, { name, labels: {} });
      }),
    addLeaseResource: async (ctx, lease, r) => {
      await around('add', r);
      await localCall(ctx, (c) => metadata.stores.leases.addResource(c, lease, r));
      await around('add', r);
    },
    deleteLeaseResource: async (ctx, lease, r) => {
      await around('delete', r);
      await localCall(ctx, (c) => metadata.stores.leases.deleteResource(c, lease, r));
      await around('delete', r);
    },
    close: () => undefined,
  };
  const peer = metadataClient(calls, nopLogger);
  const content = await createContentModule({
    db,
    bus,
    log: nopLogger,
    backend: backend ?? { kind: 'fs', root: join(dir.path, 'content') },
    metadata: peer,
  });
  const snapshots = await createSnapshotsModule({
    db,
    bus,
    log: nopLogger,
    root: join(dir.path, 'snapshots'),
    node: 'n1',
    metadata: peer,
  });
  const server = createServer();
  registerAll(server, [metadata, content, snapshots]);
  const bound = await listen(server, join(dir.path, 'owners.sock'));
  const parts: LocalOwnerParts = {
    metadata: metadata.collectable,
    content: content.collectable,
    snapshots: snapshots.collectable,
    node: { name: 'n1', reconcile: () => snapshots.reconcile() },
  };
  return {
    dir,
    address: bound.address,
    bus,
    metadata,
    content,
    snapshots,
    parts,
    async close() {
      await bound.close();
      await snapshots.close();
      await content.close();
      await metadata.close();
      await bus.close();
      await dir.remove();
    },
  };
}

export type TestOwners = Awaited<ReturnType<typeof startOwners>>;

/** The calling suite's owners over a throwaway PGlite database: opened before its tests, closed after them. */
export function ownersOnPglite(): { readonly db: Db; readonly owners: TestOwners } {
  const held = {} as { db: Db; owners: TestOwners };
  beforeAll(async () => {
    held.db = await openDb('pglite://memory');
    held.owners = await startOwners(held.db);
  });
  afterAll(async () => {
    await held.owners?.close();
    await held.db?.close();
  });
  return held;
}

/** containerd's test digests: distinct, deterministic. */
export const dgst = (i: number): string => `sha256:${createHash('sha256').update(`gc-test-${i}`).digest('hex')}`;

export const labelmap = (...kv: string[]): Record<string, string> => {
  const m: Record<string, string> = {};
  for (let i = 0; i + 1 < kv.length; i += 2) m[kv[i] as string] = kv[i + 1] as string;
  return m;
};

/** Writes records straight into the owners' tables, as containerd's gc_test alters its buckets. */
export function alters(q: Queryable) {
  const ns = (n: string) => q.query('INSERT INTO metadata.namespaces (name) VALUES ($1) ON CONFLICT DO NOTHING', [n]);
  const lease = async (n: string, id: string, labels: Record<string, string> = {}) => {
    await ns(n);
    await q.query(
      `INSERT INTO metadata.leases (namespace, id, labels, created_at) VALUES ($1, $2, $3::text::jsonb, now())
       ON CONFLICT (namespace, id) DO UPDATE SET labels = EXCLUDED.labels`,
      [n, id, JSON.stringify(labels)],
    );
  };
  const ensureLease = async (n: string, id: string) => {
    await ns(n);
    await q.query(
      "INSERT INTO metadata.leases (namespace, id, labels, created_at) VALUES ($1, $2, '{}', now()) ON CONFLICT DO NOTHING",
      [n, id],
    );
  };
  const leaseResource = async (n: string, l: string, kind: string, snapshotter: string, id: string) => {
    await ensureLease(n, l);
    await q.query(
      'INSERT INTO metadata.lease_resources (namespace, lease, kind, snapshotter, id) VALUES ($1, $2, $3, $4, $5)',
      [n, l, kind, snapshotter, id],
    );
  };
  return {
    addImage: async (n: string, name: string, target: string, labels: Record<string, string> = {}) => {
      await ns(n);
      await q.query(
        `INSERT INTO metadata.images (namespace, name, labels, target_media_type, target_digest, target_size, created_at, updated_at)
         VALUES ($1, $2, $3::text::jsonb, 'application/vnd.oci.image.manifest.v1+json', $4, 1, now(), now())`,
        [n, name, JSON.stringify(labels), target],
      );
    },
    addContainer: async (
      n: string,
      id: string,
      snapshotter: string,
      key: string,
      labels: Record<string, string> = {},
    ) => {
      await ns(n);
      await q.query(
        `INSERT INTO metadata.containers (namespace, id, labels, runtime_name, spec_type, spec, snapshotter, snapshot_key, created_at, updated_at)
         VALUES ($1, $2, $3::text::jsonb, 'io.containerd.runc.v2', 't', '\\x00', $4, $5, now(), now())`,
        [n, id, JSON.stringify(labels), snapshotter, key],
      );
    },
    addContent: async (n: string, digest: string, labels: Record<string, string> = {}) => {
      await q.query(
        `INSERT INTO content.blobs (namespace, digest, size, labels, created_at, updated_at)
         VALUES ($1, $2, 1, $3::text::jsonb, now(), now())`,
        [n, digest, JSON.stringify(labels)],
      );
    },
    addIngest: async (n: string, ref: string, expected: string, expiresAt: Date | null) => {
      await q.query(
        `INSERT INTO content.ingests (namespace, ref, bref, total, expected, started_at, updated_at, expires_at)
         VALUES ($1, $2, $3, 0, $4, now(), now(), $5)`,
        [n, ref, randomBytes(8).toString('hex'), expected, expiresAt],
      );
    },
    addSnapshot: async (
      n: string,
      snapshotter: string,
      key: string,
      parent: string,
      labels: Record<string, string> = {},
    ) => {
      await q.query(
        `INSERT INTO snapshots.snapshots (node, snapshotter, namespace, key, kind, parent_id, labels)
         VALUES ('n1', $1, $2, $3, 'committed',
                 (SELECT id FROM snapshots.snapshots WHERE node = 'n1' AND snapshotter = $1 AND namespace = $2 AND key = $4),
                 $5::text::jsonb)`,
        [snapshotter, n, key, parent, JSON.stringify(labels)],
      );
    },
    addLease: lease,
    addLeaseContent: (n: string, l: string, digest: string) => leaseResource(n, l, 'content', '', digest),
    addLeaseSnapshot: (n: string, l: string, snapshotter: string, key: string) =>
      leaseResource(n, l, 'snapshots', snapshotter, key),
    addLeaseIngest: (n: string, l: string, ref: string) => leaseResource(n, l, 'ingests', '', ref),
  };
}
