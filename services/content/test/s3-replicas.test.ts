import { useS3 } from '@berth/testing/s3';
import { Client } from 'minio';
import { afterAll, expect, it } from 'vitest';
import { createBlobStore } from '../src/store/index.js';

const s3 = await useS3();
afterAll(() => s3.stop());

it('replicas starting at once on a bucket that does not exist yet all start, and share one bucket', async () => {
  const client = new Client(s3);
  for (let round = 0; round < 3; round++) {
    const bucket = `${s3.bucket}-replicas-${round}`;
    expect(await client.bucketExists(bucket)).toBe(false);
    const config = { ...s3, kind: 's3' as const, bucket, prefix: 'berth/', partSize: 5 * 1024 * 1024 };
    const started = await Promise.allSettled([1, 2, 3].map(() => createBlobStore(config)));
    expect(started.map((s) => (s.status === 'rejected' ? String(s.reason) : 'started'))).toEqual([
      'started',
      'started',
      'started',
    ]);
    expect(await client.bucketExists(bucket)).toBe(true);
    await client.removeBucket(bucket);
  }
});
