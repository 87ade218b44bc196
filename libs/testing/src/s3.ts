/**
 * S3-compatible storage for tests: every `useS3()` call gets a fresh, empty bucket.
 *
 * The server is the first that works of:
 *  1. testcontainers `minio/minio server /data` (only where a container runtime works; shared per
 *     process; keys minioadmin/minioadmin);
 *  2. $BERTH_TEST_S3_URL, e.g. `http://ACCESS:SECRET@127.0.0.1:9000` (https → useSSL). Keys come
 *     from the URL userinfo, else $BERTH_TEST_S3_ACCESS_KEY / $BERTH_TEST_S3_SECRET_KEY; region from
 *     $BERTH_TEST_S3_REGION (default us-east-1). The server is assumed to support multipart uploads
 *     unless $BERTH_TEST_S3_MULTIPART=0. If set but unusable, useS3() throws instead of falling back;
 *  3. s3rver (a fake S3) in-process on 127.0.0.1, port 0, with its own temp directory.
 *     s3rver only accepts the access key "S3RVER" with secret "S3RVER".
 *
 * s3rver lacks ListMultipartUploads (and lifecycle), so the minio client's multipart upload
 * (`putObject` of a stream larger than its partSize, which it starts by listing uploads to
 * resume) fails with NotImplemented. `supportsMultipart` is false there: keep objects at or below
 * the client's partSize so they go up as one PUT, or skip the multipart case in that test.
 */
import { Client } from 'minio';
import S3rver from 's3rver';
import type { ServerSource } from './attempts.js';
import { Attempts, describe } from './attempts.js';
import { containerRuntime, sharedContainer } from './containers.js';
import { tempDir } from './tmp.js';
import { uniqueName } from './unique-name.js';

/** Connection settings; structurally usable as minio `ClientOptions`: `new Client(s3)`. */
export interface TestS3 {
  readonly endPoint: string;
  readonly port: number;
  readonly useSSL: boolean;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
  /** A bucket created empty for this caller. */
  readonly bucket: string;
  /** False on s3rver (no ListMultipartUploads): keep uploads to a single PUT there. */
  readonly supportsMultipart: boolean;
  readonly source: ServerSource;
  /** Empties and removes the bucket, and stops the server if this call started it. Idempotent. */
  stop(): Promise<void>;
}

interface Endpoint {
  endPoint: string;
  port: number;
  useSSL: boolean;
  accessKey: string;
  secretKey: string;
  region: string;
}

const MINIO_USER = 'minioadmin';
const MINIO_PASSWORD = 'minioadmin';

function client(ep: Endpoint): Client {
  return new Client({ ...ep });
}

async function emptyAndRemoveBucket(ep: Endpoint, bucket: string): Promise<void> {
  const c = client(ep);
  const names: string[] = [];
  for await (const item of c.listObjectsV2(bucket, '', true)) {
    const name = (item as { name?: string }).name;
    if (name !== undefined) names.push(name);
  }
  for (let i = 0; i < names.length; i += 1000) await c.removeObjects(bucket, names.slice(i, i + 1000));
  await c.removeBucket(bucket);
}

async function withBucket(
  ep: Endpoint,
  supportsMultipart: boolean,
  source: ServerSource,
  release: () => Promise<void>,
  removeBucket: boolean,
): Promise<TestS3> {
  const bucket = uniqueName('berth-t-');
  await client(ep).makeBucket(bucket, ep.region);
  let stopped = false;
  return {
    ...ep,
    bucket,
    supportsMultipart,
    source,
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        if (removeBucket) await emptyAndRemoveBucket(ep, bucket);
      } finally {
        await release();
      }
    },
  };
}

function endpointFromEnv(raw: string): Endpoint {
  const u = new URL(raw);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new Error(`expected an http:// or https:// URL, got ${u.protocol}`);
  }
  const useSSL = u.protocol === 'https:';
  const accessKey = decodeURIComponent(u.username) || process.env['BERTH_TEST_S3_ACCESS_KEY'] || '';
  const secretKey = decodeURIComponent(u.password) || process.env['BERTH_TEST_S3_SECRET_KEY'] || '';
  if (!accessKey || !secretKey) {
    throw new Error(
      'no credentials: put them in the URL userinfo or set BERTH_TEST_S3_ACCESS_KEY and BERTH_TEST_S3_SECRET_KEY',
    );
  }
  return {
    endPoint: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port ? Number(u.port) : useSSL ? 443 : 80,
    useSSL,
    accessKey,
    secretKey,
    region: process.env['BERTH_TEST_S3_REGION'] || 'us-east-1',
  };
}

/** A fresh bucket on an S3-compatible server; see the module doc for where the server comes from. */
export async function useS3(): Promise<TestS3> {
  const attempts = new Attempts('S3');

  const rt = await containerRuntime();
  if (rt.available) {
    try {
      const lease = await sharedContainer('minio', (tc) =>
        new tc.GenericContainer('minio/minio')
          .withCommand(['server', '/data'])
          .withEnvironment({ MINIO_ROOT_USER: MINIO_USER, MINIO_ROOT_PASSWORD: MINIO_PASSWORD })
          .withExposedPorts(9000)
          .withWaitStrategy(tc.Wait.forHttp('/minio/health/ready', 9000))
          .start(),
      );
      const c = lease.value;
      const ep: Endpoint = {
        endPoint: c.getHost(),
        port: c.getMappedPort(9000),
        useSSL: false,
        accessKey: MINIO_USER,
        secretKey: MINIO_PASSWORD,
        region: 'us-east-1',
      };
      try {
        return await withBucket(ep, true, 'container', () => lease.release(), true);
      } catch (err) {
        await lease.release();
        throw err;
      }
    } catch (err) {
      attempts.note('testcontainers minio/minio', err);
    }
  } else {
    attempts.note('testcontainers', rt.reason);
  }

  const envUrl = process.env['BERTH_TEST_S3_URL'];
  if (envUrl) {
    try {
      const ep = endpointFromEnv(envUrl);
      const mp = process.env['BERTH_TEST_S3_MULTIPART'];
      return await withBucket(ep, mp !== '0' && mp !== 'false', 'env', async () => {}, true);
    } catch (err) {
      throw new Error(`BERTH_TEST_S3_URL is set but no bucket could be created there: ${describe(err)}`, {
        cause: err,
      });
    }
  }
  attempts.note('$BERTH_TEST_S3_URL', 'not set');

  const dir = tempDir('berth-s3rver-');
  try {
    const server = new S3rver({ address: '127.0.0.1', port: 0, directory: dir.path, silent: true });
    const addr = await server.run();
    const close = async (): Promise<void> => {
      try {
        await server.close();
      } finally {
        await dir.remove();
      }
    };
    const ep: Endpoint = {
      endPoint: '127.0.0.1',
      port: addr.port,
      useSSL: false,
      accessKey: 'S3RVER',
      secretKey: 'S3RVER',
      region: 'us-east-1',
    };
    try {
      return await withBucket(ep, false, 'in-process', close, false);
    } catch (err) {
      await close();
      throw err;
    }
  } catch (err) {
    await dir.remove();
    attempts.note('s3rver in-process on 127.0.0.1:0', err);
  }
  return attempts.fail();
}
