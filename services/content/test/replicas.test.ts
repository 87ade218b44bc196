import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Db, openDb } from '@berth/common/db';
import { createInProcessBus } from '@berth/common/event-bus';
import { eventually } from '@berth/testing/async-checks';
import { notificationsSettled } from '@berth/testing/notifications';
import { usePostgres } from '@berth/testing/postgres';
import { type TempDir, tempDir } from '@berth/testing/tmp';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobsChannel } from '../src/db/migrations.js';
import { call, failsWith, type Harness, md, sha256, startHarness, writeBlob } from './harness.js';

interface Shared {
  /** What replica A uses; B opens its own connections to the same database where it can. */
  readonly db: Db;
  openOther(): Promise<Db>;
  drop(): Promise<void>;
}

/**
 * Two content replicas over one database and one blob root: what one of them writes, the other sees, although
 * each keeps Info rows in memory. Only the blob-row notifications can tell replica A of B's writes.
 */
function replicaSuite(name: string, open: () => Promise<Shared>): void {
  describe(`content replicas sharing one database: ${name}`, () => {
    let shared: Shared;
    let blobs: TempDir;
    let a: Harness;
    let b: Harness;
    beforeAll(async () => {
      shared = await open();
      blobs = tempDir('berth-content-replicas-');
      const backend = { kind: 'fs', root: blobs.path } as const;
      a = await startHarness(backend, {
        db: shared.db,
        bus: createInProcessBus(),
        dir: mkdtempSync(join(tmpdir(), 'berth-content-a-')),
      });
      b = await startHarness(backend, {
        db: await shared.openOther(),
        bus: createInProcessBus(),
        dir: mkdtempSync(join(tmpdir(), 'berth-content-b-')),
      });
    });
    afterAll(async () => {
      await b?.close();
      await a?.close();
      await shared?.drop();
      await blobs?.remove();
    });

    const infoOf = async (h: Harness, digest: string) =>
      (await call(h.client.info, h.client, { digest }, md('ns'))).info;

    const committed = async (labels: Record<string, string>): Promise<string> => {
      const data = randomBytes(4096);
      await writeBlob(a.client, 'ns', `ref-${sha256(data)}`, data, { labels });
      await notificationsSettled(shared.db, [blobsChannel]);
      return sha256(data);
    };

    it('serves Info from memory: a row changed behind the trigger is not seen', async () => {
      const digest = await committed({ v: '1' });
      expect((await infoOf(a, digest))?.labels).toEqual({ v: '1' });
      await shared.db.transaction(async (tx) => {
        await tx.exec('SET LOCAL session_replication_role = replica');
        await tx.query(`UPDATE content.blobs SET labels = '{"v":"hidden"}' WHERE digest = $1`, [digest]);
      });
      expect((await infoOf(a, digest))?.labels).toEqual({ v: '1' });
      expect((await infoOf(b, digest))?.labels).toEqual({ v: 'hidden' });
    });

    it("sees the other replica's label update", async () => {
      const digest = await committed({ v: '1' });
      expect((await infoOf(a, digest))?.labels).toEqual({ v: '1' });
      await call(
        b.client.update,
        b.client,
        { info: { digest, size: 0, labels: { v: '2' } }, updateMask: ['labels.v'] },
        md('ns'),
      );
      await eventually(async () => expect((await infoOf(a, digest))?.labels).toEqual({ v: '2' }));
    });

    it("sees the other replica's commit of a blob it had found missing", async () => {
      const data = randomBytes(4096);
      const digest = sha256(data);
      await failsWith(call(a.client.info, a.client, { digest }, md('ns')), status.NOT_FOUND);
      await writeBlob(b.client, 'ns', `ref-${digest}`, data);
      await eventually(async () => expect((await infoOf(a, digest))?.size).toBe(4096));
    });

    it("sees the other replica's delete, in Info and Read", async () => {
      const digest = await committed({});
      await infoOf(a, digest);
      await call(b.client.delete, b.client, { digest }, md('ns'));
      await eventually(() => failsWith(call(a.client.info, a.client, { digest }, md('ns')), status.NOT_FOUND));
      await failsWith(
        new Promise((resolve, reject) => {
          const s = a.client.read({ digest, offset: 0, size: 0 }, md('ns'));
          s.on('data', () => undefined);
          s.on('error', reject);
          s.on('end', resolve);
        }),
        status.NOT_FOUND,
      );
    });

    it('sees a row deleted by any other writer of the table, as a gc would', async () => {
      const digest = await committed({});
      await infoOf(a, digest);
      await shared.db.query('DELETE FROM content.blobs WHERE namespace = $1 AND digest = $2', ['ns', digest]);
      await eventually(() => failsWith(call(a.client.info, a.client, { digest }, md('ns')), status.NOT_FOUND));
    });
  });
}

/** PGlite is one in-process session: both replicas share it (the harness closes it only once). */
replicaSuite('PGlite', async () => {
  const db = await openDb('pglite://memory');
  return {
    db,
    openOther: async () => ({ ...db, close: async () => undefined }),
    drop: async () => undefined,
  };
});

replicaSuite('PostgreSQL server', async () => {
  const pg = await usePostgres();
  return {
    db: await openDb(pg.url),
    openOther: () => openDb(pg.url),
    drop: () => pg.drop(),
  };
});
