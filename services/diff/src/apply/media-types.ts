import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { ErrorCode, ServiceError } from '@berth/common/errors';

export const MediaType = {
  layer: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export type Compression = 'none' | 'gzip' | 'zstd';

const known: Readonly<Record<string, Compression>> = {
  [MediaType.layer]: 'none',
  [MediaType.layerGzip]: 'gzip',
  [MediaType.layerZstd]: 'zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'none',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': 'zstd',
  [MediaType.dockerLayerGzip]: 'gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'gzip',
};

/** How a layer of `mediaType` is compressed; not_implemented (containerd's wording) for anything else. */
export function compressionOf(mediaType: string): Compression {
  const c = known[mediaType];
  if (c === undefined) {
    throw new ServiceError(
      ErrorCode.NotImplemented,
      `failed to get stream processor for ${mediaType}: no processor for media-type: not implemented`,
    );
  }
  return c;
}

/** Decompresses a byte stream: gzip in process (zlib), zstd with the `zstd` tool (Node 20 has no zstd). */
export function decompress(source: AsyncIterable<Buffer>, c: Compression): AsyncIterable<Buffer> {
  switch (c) {
    case 'none':
      return source;
    case 'gzip': {
      const gunzip = createGunzip({ chunkSize: 256 * 1024 });
      const done = pipeline(Readable.from(source), gunzip);
      // Observed through `drained`; this only keeps an early failure from counting as unhandled.
      done.catch(() => undefined);
      return drained(gunzip, done, 'gzip', () => gunzip.destroy());
    }
    case 'zstd': {
      const child = spawn('zstd', ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<void>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (code) =>
          code === 0
            ? resolve()
            : reject(new ServiceError(ErrorCode.Unknown, `zstd: ${stderr.trim() || `exit ${code}`}`)),
        );
      });
      const fed = pipeline(Readable.from(source), child.stdin);
      const done = Promise.all([fed, exited]);
      done.catch(() => undefined);
      return drained(child.stdout, done, 'zstd', () => child.kill('SIGKILL'));
    }
  }
}

/** Yields `out` and then surfaces any failure of the producing side; kills it if the consumer stops early. */
async function* drained(
  out: AsyncIterable<Buffer>,
  done: Promise<unknown>,
  what: string,
  kill?: () => void,
): AsyncGenerator<Buffer> {
  let finished = false;
  // Pipes deliver 64 KiB at a time; larger chunks make every later stage (digest, parse, tar) cheaper.
  const target = 1 << 20;
  let held: Buffer[] = [];
  let heldBytes = 0;
  try {
    for await (const chunk of out) {
      held.push(chunk);
      heldBytes += chunk.length;
      if (heldBytes >= target) {
        yield held.length === 1 ? chunk : Buffer.concat(held, heldBytes);
        held = [];
        heldBytes = 0;
      }
    }
    if (heldBytes > 0) yield Buffer.concat(held, heldBytes);
    await done;
    finished = true;
  } catch (e) {
    if (e instanceof ServiceError) throw e;
    throw new ServiceError(ErrorCode.Unknown, `failed to decompress layer (${what}): ${(e as Error).message}`, {
      cause: e,
    });
  } finally {
    if (!finished) kill?.();
  }
}
