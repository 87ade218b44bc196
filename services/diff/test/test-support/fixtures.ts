/** Test support: real layers, a real content server over gRPC, snapshots, and tree fingerprints. */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { backgroundContext, type RequestContext } from '@berth/common/context';
import { alreadyExists, failedPrecondition, notFound } from '@berth/common/errors';
import { adaptorFromObject, alwaysPresent, parseFilters } from '@berth/common/filters';
import { handlers } from '@berth/common/grpc-handlers';
import { type BoundServer, createServer, listen } from '@berth/common/grpc-server';
import { nopLogger } from '@berth/common/log';
import type { Mount } from '@berth/common/mount';
import {
  ContentService,
  type ReadContentResponse,
  WriteAction,
  type WriteContentRequest,
  type WriteContentResponse,
} from '@berth/proto/containerd/services/content/v1/content';
import * as grpc from '@grpc/grpc-js';
import * as tar from 'tar-stream';
import { createExtract, type Extract, type ExtractDeps } from '../../src/apply/extract.js';
import { createThreadedExtract } from '../../src/apply/extract-thread.js';

/**
 * The two ways a layer is extracted, for suites that run once with each: on the calling thread
 * (`createExtract`, what runs inside an extraction thread), and as berthd does, on a worker thread.
 */
export const extractions: ReadonlyArray<readonly [string, (deps: ExtractDeps) => Extract]> = [
  ['in line', createExtract],
  ['on a worker thread', createThreadedExtract],
];

export const ctxIn = (namespace = 'default'): RequestContext => backgroundContext(nopLogger, namespace);

export type LayerEntry = tar.Headers & { pax?: Record<string, string>; body?: string | Buffer };

/** An uncompressed tar built with tar-stream (an independent writer, not our reader's twin). */
export async function buildTar(entries: readonly LayerEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c);
  })();
  for (const { body, ...h } of entries) {
    await new Promise<void>((resolve, reject) => {
      pack.entry({ mtime: new Date(1_600_000_000_000), ...h } as tar.Headers, body ?? '', (err) =>
        err ? reject(err) : resolve(),
      );
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export const gzip = (b: Buffer): Buffer => gzipSync(b);
export function zstd(b: Buffer): Buffer {
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: b, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr.toString()}`);
  return r.stdout;
}
export const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A content service keeping blobs in memory, spoken to through the real Content API (Read and Write). */
export async function startContentServer(dir: string): Promise<{
  address: string;
  /** Stores `blob` under its digest, or under `as` to play a store that returns the wrong bytes. */
  put(blob: Buffer, as?: string, labels?: Record<string, string>): { digest: string; size: number };
  /** A committed blob and the labels it was committed with. */
  get(digest: string): { blob: Buffer; labels: Record<string, string> } | undefined;
  close(): Promise<void>;
}> {
  const blobs = new Map<string, Buffer>();
  const labelsOf = new Map<string, Record<string, string>>();
  const updatedAt = new Map<string, Date>();
  const h = handlers(nopLogger);
  const server = createServer();
  const unimplemented = (_call: unknown, cb: (e: grpc.ServiceError) => void): void =>
    cb(
      Object.assign(new Error('unimplemented'), {
        code: grpc.status.UNIMPLEMENTED,
        details: 'unimplemented',
        metadata: new grpc.Metadata(),
      }),
    );
  server.addService(ContentService, {
    read: h.serverStream(async function* (req: {
      digest: string;
      offset: number;
    }): AsyncGenerator<ReadContentResponse> {
      const blob = blobs.get(req.digest);
      if (!blob) throw notFound(`content digest ${req.digest}`);
      for (let off = req.offset; off < blob.length; off += 64 * 1024) {
        yield { offset: off, data: blob.subarray(off, off + 64 * 1024) };
      }
    }),
    info: unimplemented,
    update: unimplemented,
    list: h.serverStream(async function* (req: { filters: string[] }) {
      const filter = parseFilters(req.filters);
      const info = [...blobs]
        .map(([digest, blob]) => ({ digest, size: blob.length, labels: labelsOf.get(digest) ?? {} }))
        .filter((i) => filter.match(adaptorFromObject({ digest: alwaysPresent(i.digest), labels: i.labels })))
        .map((i) => ({ ...i, createdAt: new Date(), updatedAt: updatedAt.get(i.digest) ?? new Date(0) }));
      yield { info };
    }),
    delete: unimplemented,
    status: unimplemented,
    listStatuses: unimplemented,
    write: h.bidi(async function* (reqs: AsyncIterable<WriteContentRequest>): AsyncGenerator<WriteContentResponse> {
      let data = Buffer.alloc(0);
      for await (const r of reqs) {
        const base = { action: r.action, offset: data.length, total: r.total, digest: '' };
        if (r.action === WriteAction.STAT) yield base;
        else if (r.action === WriteAction.WRITE) {
          if (r.offset !== data.length) throw failedPrecondition(`write at ${r.offset}, have ${data.length}`);
          data = Buffer.concat([data, r.data]);
          yield { ...base, offset: data.length };
        } else if (r.action === WriteAction.COMMIT) {
          const digest = sha256(data);
          if (r.expected !== '' && r.expected !== digest)
            throw failedPrecondition(`unexpected commit digest ${digest}`);
          if (blobs.has(digest)) throw alreadyExists(`content ${digest}`);
          blobs.set(digest, data);
          labelsOf.set(digest, { ...r.labels });
          yield { ...base, digest };
        }
      }
    }),
    abort: unimplemented,
  });
  const bound: BoundServer = await listen(server, join(dir, 'content.sock'));
  return {
    address: bound.address,
    put(blob, as, labels) {
      const digest = as ?? sha256(blob);
      blobs.set(digest, blob);
      if (labels) labelsOf.set(digest, labels);
      updatedAt.set(digest, new Date());
      return { digest, size: blob.length };
    },
    get(digest) {
      const blob = blobs.get(digest);
      return blob && { blob, labels: labelsOf.get(digest) ?? {} };
    },
    close: () => bound.close(0),
  };
}

/**
 * A fingerprint of every path under `dir`: type, mode, owner, and content hash, link target or device
 * number. Times are left out unless `withTimes`.
 */
export async function treeOf(dir: string, withTimes = false): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const inodes = new Map<string, string>();
  const visit = async (rel: string): Promise<void> => {
    const path = rel === '' ? dir : join(dir, rel);
    const st = await lstat(path, { bigint: true });
    const mode = (Number(st.mode) & 0o7777).toString(8).padStart(4, '0');
    const owner = `${st.uid}:${st.gid}`;
    const time = withTimes ? ` t=${st.mtimeMs / 1000n}` : '';
    let desc: string;
    if (st.isDirectory()) desc = `dir ${mode} ${owner}${time}`;
    else if (st.isSymbolicLink()) desc = `symlink ${owner} -> ${await readlink(path)}`;
    else if (st.isFile()) {
      const ino = `${st.dev}:${st.ino}`;
      const first = inodes.get(ino);
      const hash = createHash('sha256')
        .update(await readFile(path))
        .digest('hex')
        .slice(0, 16);
      desc = `file ${mode} ${owner} ${st.size} ${hash}${time}${first ? ` link=${first}` : ''}`;
      if (!first) inodes.set(ino, rel);
    } else if (st.isCharacterDevice()) desc = `char ${mode} ${owner} ${st.rdev}`;
    else if (st.isBlockDevice()) desc = `block ${mode} ${owner} ${st.rdev}`;
    else if (st.isFIFO()) desc = `fifo ${mode} ${owner}`;
    else desc = `other ${mode}`;
    if (rel !== '') out[rel] = desc;
    if (st.isDirectory()) for (const n of (await readdir(path)).sort()) await visit(rel === '' ? n : `${rel}/${n}`);
  };
  await visit('');
  return out;
}

/** Mounts `mounts` read-only-or-not as given (like a runtime would), returns the tree, unmounts. */
export async function mountedTree(mounts: readonly Mount[], withTimes = false): Promise<Record<string, string>> {
  const dir = await mkdtemp('/tmp/berth-view-');
  const [m] = mounts;
  if (!m) throw new Error('no mount');
  if (m.type === 'bind') execFileSync('mount', ['--bind', '-o', 'ro', m.source, dir]);
  else execFileSync('mount', ['-t', m.type, m.source, dir, '-o', m.options.join(',')]);
  try {
    return await treeOf(dir, withTimes);
  } finally {
    execFileSync('umount', [dir]);
    await rm(dir, { recursive: true });
  }
}

/** Reads an extended attribute without a native addon (Node has no xattr API). */
export function getXattr(path: string, name: string): string | undefined {
  const r = spawnSync('python3', [
    '-c',
    'import os,sys\ntry: sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).decode("latin1"))\nexcept OSError: sys.exit(3)',
    path,
    name,
  ]);
  return r.status === 0 ? r.stdout.toString('latin1') : undefined;
}
