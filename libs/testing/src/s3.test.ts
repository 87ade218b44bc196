import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Client } from 'minio';
import { describe, expect, it } from 'vitest';
import { useS3 } from './s3.js';

const ms = (t0: number): string => `${(performance.now() - t0).toFixed(0)} ms`;

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

describe('useS3', () => {
  it('gives a fresh bucket where objects can be put and read back', async () => {
    const t0 = performance.now();
    const s3 = await useS3();
    console.info(`useS3 (${s3.source}) ready in ${ms(t0)} on port ${s3.port}`);
    try {
      if (s3.source === 'in-process') {
        expect(s3).toMatchObject({ accessKey: 'S3RVER', secretKey: 'S3RVER', supportsMultipart: false });
      }
      const c = new Client(s3);
      expect(await c.bucketExists(s3.bucket)).toBe(true);
      const listed: unknown[] = [];
      for await (const o of c.listObjectsV2(s3.bucket, '', true)) listed.push(o);
      expect(listed).toEqual([]);

      const body = randomBytes(3 * 1024 * 1024 + 17);
      await c.putObject(s3.bucket, 'blobs/sha256/abc', body, body.length, {
        'Content-Type': 'application/octet-stream',
      });
      const stat = await c.statObject(s3.bucket, 'blobs/sha256/abc');
      expect(stat.size).toBe(body.length);
      const back = await readAll(await c.getObject(s3.bucket, 'blobs/sha256/abc'));
      expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(body).digest('hex'));

      const range = await readAll(await c.getPartialObject(s3.bucket, 'blobs/sha256/abc', 10, 5));
      expect(range.equals(body.subarray(10, 15))).toBe(true);
    } finally {
      await s3.stop();
    }
  });

  it('isolates callers, and BERTH_TEST_S3_URL (keys in userinfo) is honoured', async () => {
    const a = await useS3();
    const saved = process.env['BERTH_TEST_S3_URL'];
    try {
      const b = await useS3();
      expect(b.bucket).not.toBe(a.bucket);
      await b.stop();

      process.env['BERTH_TEST_S3_URL'] = `http://${a.accessKey}:${a.secretKey}@${a.endPoint}:${a.port}`;
      const viaEnv = await useS3();
      expect(viaEnv).toMatchObject({ source: 'env', endPoint: a.endPoint, port: a.port, supportsMultipart: true });
      expect(viaEnv.bucket).not.toBe(a.bucket);
      const c = new Client(viaEnv);
      await c.putObject(viaEnv.bucket, 'k', Buffer.from('v'));
      await viaEnv.stop();
      expect(await c.bucketExists(viaEnv.bucket)).toBe(false); // emptied and removed

      process.env['BERTH_TEST_S3_URL'] = `http://wrong:keys@${a.endPoint}:${a.port}`;
      await expect(useS3()).rejects.toThrow(/BERTH_TEST_S3_URL is set but/);
    } finally {
      if (saved === undefined) delete process.env['BERTH_TEST_S3_URL'];
      else process.env['BERTH_TEST_S3_URL'] = saved;
      await a.stop();
    }
  });
});
