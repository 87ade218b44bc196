import { createHash } from 'node:crypto';
import { connectNode } from '@berth/client';
import { backgroundContext } from '@berth/common/context';
import { type Db, openDb } from '@berth/common/db';
import { nopLogger } from '@berth/common/log';
import { type TestS3, useS3 } from '@berth/testing/s3';
import { Client } from 'minio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollector } from '../src/collector.js';
import { inProcessOwners } from '../src/index.js';
import { startOwners } from './owners-harness.js';

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/**
 * On S3 the uploader of a blob may be another node, between placing its object and committing its record:
 * an object no record names is deleted only once older than the grace window.
 */
describe('gc on the S3 content backend', () => {
  let s3: TestS3;
  let db: Db;
  let owners: Awaited<ReturnType<typeof startOwners>>;
  let client: Client;
  const prefix = 'gc-grace/';

  beforeAll(async () => {
    s3 = await useS3();
    db = await openDb('pglite://memory');
    owners = await startOwners(
      db,
      {},
      {
        kind: 's3',
        endPoint: s3.endPoint,
        port: s3.port,
        useSSL: s3.useSSL,
        accessKey: s3.accessKey,
        secretKey: s3.secretKey,
        region: s3.region,
        bucket: s3.bucket,
        prefix,
        partSize: 5 * 1024 * 1024,
      },
    );
    client = new Client(s3);
  });
  afterAll(async () => {
    await owners?.close();
    await db?.close();
    await s3?.stop();
  });

  const objects = async (): Promise<string[]> => {
    const names: string[] = [];
    for await (const item of client.listObjectsV2(s3.bucket, prefix, true)) {
      const name = (item as { name?: string }).name;
      if (name) names.push(name);
    }
    return names.sort();
  };

  it('keeps unrecorded objects younger than the grace window, then deletes them; object count back to zero', async () => {
    const graceMs = 3_000;
    const collector = createCollector({
      owners: inProcessOwners(db, owners.parts, { contentGraceMs: graceMs, deleteTimeoutMs: 10_000 }, nopLogger),
      log: nopLogger,
    });
    const ns = 'grace';
    const bg = backgroundContext(nopLogger, ns);
    await owners.metadata.stores.leases.create(bg, 'pull', {});
    const blob = Buffer.from(`a layer on s3 ${Date.now()}`);
    const digest = digestOf(blob);
    const node = connectNode(owners.address);
    await node.content.ingest(
      { namespace: ns, lease: 'pull', signal: new AbortController().signal },
      { open: async (offset) => ({ start: offset, body: [blob.subarray(offset)] }) },
      { ref: 'grace-ref', desc: { mediaType: 'application/octet-stream', digest, size: blob.length } },
    );
    node.close();
    // Another node's upload in flight: bytes placed, no record yet.
    const orphan = Buffer.from('in flight elsewhere');
    await client.putObject(s3.bucket, `${prefix}blobs/sha256/${digestOf(orphan).slice(7)}`, orphan);
    expect(await objects()).toHaveLength(2);

    let stats = await collector.collect();
    expect(stats.content.blobsDeleted).toBe(0);
    expect(await objects()).toHaveLength(2);

    // Released: the record goes at once, the bytes only once the window passed.
    await owners.metadata.stores.leases.delete(bg, 'pull');
    stats = await collector.collect();
    expect(stats.removed.blobs).toBe(1);
    expect(stats.content.blobsDeleted).toBe(0);
    expect(await objects()).toHaveLength(2);

    await new Promise((r) => setTimeout(r, graceMs + 500));
    stats = await collector.collect();
    expect(stats.content.blobsDeleted).toBe(2);
    expect(stats.content.failures).toBe(0);
    expect(await objects()).toEqual([]);
  });
});
