/**
 * gc-pause's containerd side: a private containerd 1.6 (debug log, for its collector's timings), loaded with
 * the same shape through its own gRPC API, and collected the way its users collect: a sync Leases.Delete.
 *
 * - Load, all under one lease (containerd collects unreferenced committed snapshots, and its scheduler runs on
 *   its own while loading): N manifest blobs through Content.Write, each labelled with the same gc references
 *   as Berth's (a shared config, `containerd.io/gc.ref.snapshot.overlayfs` = chain-(i mod M/10)); N images, each
 *   targeting its blob; M/10 chains of 10 overlayfs snapshots (Prepare, then Commit as chain-k). Dropping the
 *   lease leaves the M - M/10 snapshots no label reaches as garbage: the backlog collection is that Delete.
 * - Churn: 10 images deleted (not sync), then a chain of 100 snapshots committed under a fresh lease; the steady
 *   collection is that lease's sync Delete.
 * - Per collection, from containerd's log: `garbage collected` d= (its metadata mark and sweep, all under the
 *   write lock that every metadata write takes shared: the writers' pause) and `snapshot garbage collected` d=
 *   (the overlayfs records and directories, after the lock). The total is the sync Delete's round trip.
 */
import { createHash, randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { open } from 'node:fs/promises';
import { type CallContext, connectNode, createLease } from '@berth/client';
import { startContainerd } from '@berth/testing/containerd';
import { type GcSystem, imageName, referencedSnapshot, type ShapeOptions } from './gc-pause-system.js';

const namespace = 'bench';
const snapshotter = 'overlayfs';
const manifestType = 'application/vnd.oci.image.manifest.v1+json';
/** Requests in flight while loading (the daemon serialises its bolt writes; this keeps it busy). */
const loaders = 16;

export async function containerdSystem(opts: ShapeOptions): Promise<GcSystem> {
  const { images: nImages, snapshots: nSnapshots } = opts;
  const daemon = await startContainerd({ logLevel: 'debug' });
  const node = connectNode(daemon.socket);
  const signal = new AbortController().signal;
  setMaxListeners(0, signal); // every call listens on it; the loaders keep 16 in flight
  const ctx: CallContext = { namespace, lease: undefined, signal };
  const log = collectorLog(daemon.logFile);
  let written = 0;
  let removedWriter = 0;
  let removedImage = 0;
  let churned = 0;
  /** The lease whose sync Delete is the next collection's trigger. */
  let pending: string | undefined;

  const deleteLeaseSync = (id: string) => node.leases.delete(ctx, id, true);
  /** A chain of `length` committed snapshots named `${prefix}${first}` …, each the parent of the next. */
  const chain = async (leased: CallContext, prefix: string, first: number, length: number): Promise<void> => {
    for (let k = first; k < first + length; k++) {
      const key = `load-${prefix}${k}-${randomBytes(3).toString('hex')}`;
      await node.snapshots.prepare(leased, snapshotter, key, k === first ? '' : `${prefix}${k - 1}`);
      await node.snapshots.commit(leased, snapshotter, `${prefix}${k}`, key);
    }
  };
  /** Runs `task(i)` for i in [0, n) with `loaders` in flight. */
  const pool = async (n: number, task: (i: number) => Promise<void>): Promise<void> => {
    let next = 0;
    await Promise.all(
      Array.from({ length: loaders }, async () => {
        while (next < n) await task(next++);
      }),
    );
  };

  return {
    label: 'containerd 1.6 (own process, gRPC)',
    sharesEventLoop: false,

    async load() {
      const t0 = Date.now();
      const lease = await createLease(node, ctx);
      const leased = { ...ctx, lease };
      await pool(nImages, async (j) => {
        const i = j + 1;
        const blob = Buffer.from(
          JSON.stringify({ schemaVersion: 2, mediaType: manifestType, annotations: { i: String(i) } }),
        );
        const digest = `sha256:${sha256(blob)}`;
        await node.content.ingest(
          leased,
          { open: async (offset) => ({ start: offset, body: [blob.subarray(offset)] }) },
          {
            ref: `manifest-${i}`,
            desc: { mediaType: manifestType, digest, size: blob.length },
            labels: {
              'containerd.io/gc.ref.content.config': `sha256:${'c'.repeat(64)}`,
              [`containerd.io/gc.ref.snapshot.${snapshotter}`]: referencedSnapshot(i, nSnapshots),
            },
          },
        );
        await node.images.create(ctx, {
          name: imageName(i),
          labels: {},
          target: { mediaType: manifestType, digest, size: blob.length },
        });
      });
      const tImages = Date.now();
      await pool(nSnapshots / 10, (c) => chain(leased, 'chain-', c * 10, 10));
      pending = lease;
      return `${nImages} images, ${nImages} manifest blobs (Content.Write), ${nSnapshots} overlayfs snapshots (Prepare + Commit), loaded through gRPC with ${loaders} in flight in ${((Date.now() - t0) / 1000).toFixed(1)} s (images and blobs ${((tImages - t0) / 1000).toFixed(1)} s)`;
    },

    async write() {
      await node.images.create(ctx, {
        name: `writer/${written++}`,
        labels: {},
        target: { mediaType: manifestType, digest: `sha256:${'e'.repeat(64)}`, size: 1 },
      });
    },

    async removeWriterImages() {
      const from = removedWriter;
      const to = written;
      await pool(to - from, (j) => {
        const name = `writer/${from + j}`;
        return node.images.delete(ctx, name, false);
      });
      removedWriter = to;
      return to - from;
    },

    async churn() {
      for (let k = 0; k < 10; k++) {
        const name = imageName(++removedImage);
        await node.images.delete(ctx, name, false);
      }
      const lease = await createLease(node, ctx);
      await chain({ ...ctx, lease }, `garbage-${churned++}-`, 0, 100);
      pending = lease;
      await new Promise((r) => setTimeout(r, 200));
    },

    async collect() {
      if (!pending) throw new Error('nothing to collect: load or churn first');
      const from = await log.offset();
      const t = performance.now();
      await deleteLeaseSync(pending);
      const totalMs = performance.now() - t;
      pending = undefined;
      const runs = await log.collectionsSince(from);
      const mine = runs.at(-1);
      if (!mine) throw new Error(`containerd logged no "garbage collected" for the sync delete (${daemon.logFile})`);
      return {
        pauseMs: mine.metaMs,
        totalMs,
        others: runs.length - 1,
        detail: `containerd's log: metadata mark and sweep under the write lock ${mine.metaMs.toFixed(1)} ms, then overlayfs cleanup ${fmtOpt(mine.snapshotMs)}, content cleanup ${fmtOpt(mine.contentMs)}${
          runs.length > 1
            ? `; ${runs.length - 1} other collection(s) ran meanwhile: ${runs
                .slice(0, -1)
                .map((r) => `${r.metaMs.toFixed(1)} ms`)
                .join(', ')}`
            : ''
        }`,
      };
    },

    async verify(collections, writes) {
      const images = await node.images.list(ctx, []);
      const blobs = await node.content.list(ctx, []);
      const snapshots = await node.snapshots.list(ctx, snapshotter);
      const left = { images: images.length, blobs: blobs.length, snapshots: snapshots.length };
      const expected = {
        images: nImages - 10 * collections + writes,
        blobs: nImages - 10 * collections,
        snapshots: nSnapshots / 10,
      };
      if (JSON.stringify(left) !== JSON.stringify(expected))
        throw new Error(`containerd: left ${JSON.stringify(left)}, expected ${JSON.stringify(expected)}`);
      return `left as expected: ${JSON.stringify(left)}; all collections: ${JSON.stringify(await log.summary())}`;
    },

    async close() {
      node.close();
      await daemon.stop();
    },
  };
}

const fmtOpt = (ms: number | undefined): string => (ms === undefined ? 'none' : `${ms.toFixed(1)} ms`);

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export interface LoggedCollection {
  readonly at: string;
  /** `garbage collected` d=: GCStats.MetaD, the time containerd's DB.GarbageCollect held its write lock. */
  readonly metaMs: number;
  readonly snapshotMs: number | undefined;
  readonly contentMs: number | undefined;
}

/** containerd's debug log, read from an offset: its collector's lines (metadata/db.go, gc/scheduler). */
function collectorLog(file: string) {
  const read = async (from: number): Promise<string> => {
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      const buf = Buffer.alloc(Math.max(0, size - from));
      await fh.read(buf, 0, buf.length, from);
      return buf.toString('utf8');
    } finally {
      await fh.close();
    }
  };
  return {
    offset: async (): Promise<number> => {
      const fh = await open(file, 'r');
      try {
        return (await fh.stat()).size;
      } finally {
        await fh.close();
      }
    },
    /** The collections logged after `from` (the scheduler logs each as its waiters are answered). */
    collectionsSince: async (from: number): Promise<LoggedCollection[]> => parseCollections(await read(from)),
    summary: async () => {
      const all = parseCollections(await read(0));
      return { count: all.length, metaMs: all.map((r) => Math.round(r.metaMs * 10) / 10) };
    },
  };
}

/**
 * The collections in a stretch of containerd 1.6's debug log: each `garbage collected` line (gc/scheduler, after
 * DB.GarbageCollect returned) with the `snapshot garbage collected` / `content garbage collected` lines logged
 * since the previous one (metadata/db.go, from the cleanups it waited for).
 */
export function parseCollections(text: string): LoggedCollection[] {
  const runs: LoggedCollection[] = [];
  let snapshotMs: number | undefined;
  let contentMs: number | undefined;
  for (const line of text.split('\n')) {
    const msg = /msg="([^"]*)"/.exec(line)?.[1];
    if (!msg?.endsWith('garbage collected')) continue;
    const d = goDurationMs(/ d="?([0-9.a-zµ]+)"?/.exec(line)?.[1] ?? '');
    if (msg === 'snapshot garbage collected') snapshotMs = d;
    else if (msg === 'content garbage collected') contentMs = d;
    else if (msg === 'garbage collected') {
      runs.push({ at: /time="([^"]*)"/.exec(line)?.[1] ?? '', metaMs: d, snapshotMs, contentMs });
      snapshotMs = undefined;
      contentMs = undefined;
    }
  }
  return runs;
}

/** A Go time.Duration string (`1.5ms`, `850.2µs`, `2.01s`, `1m3.2s`) in milliseconds. */
export function goDurationMs(s: string): number {
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };
  let ms = 0;
  let matched = '';
  for (const m of s.matchAll(/([0-9.]+)(ns|us|µs|ms|s|m|h)/g)) {
    ms += Number(m[1]) * (unit[m[2] ?? ''] ?? Number.NaN);
    matched += m[0];
  }
  if (matched === '' || matched !== s) throw new Error(`not a Go duration: ${JSON.stringify(s)}`);
  return ms;
}
