import { useS3 } from '@berth/testing/s3';
import { Client } from 'minio';
import { contentSuite } from './content.suite.js';

// s3rver (the local server used when no MinIO is reachable) lacks ListMultipartUploads; the S3 backend
// never needs it, so the same suite runs unchanged against it.
contentSuite('S3 backend', async () => {
  const s3 = await useS3();
  const client = new Client(s3);
  return {
    config: {
      kind: 's3',
      endPoint: s3.endPoint,
      port: s3.port,
      useSSL: s3.useSSL,
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
      region: s3.region,
      bucket: s3.bucket,
      prefix: 'berth/',
      // Small parts so the suite's few-MiB blobs take the multipart assembly path.
      partSize: 5 * 1024 * 1024,
    },
    async committedBlobs() {
      const names: string[] = [];
      for await (const item of client.listObjectsV2(s3.bucket, 'berth/blobs/sha256/', true)) {
        const name = (item as { name?: string }).name;
        if (name) names.push(name.slice('berth/blobs/sha256/'.length));
      }
      return names.sort();
    },
    teardown: () => s3.stop(),
  };
});
