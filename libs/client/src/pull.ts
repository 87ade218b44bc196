/**
 * `pull`: what `ctr images pull` does, client-side. Everything runs under one lease (so garbage
 * collection can never take half an image), created first and deleted last:
 *
 *  1. resolve the reference; fetch the index (if any), pick the manifest for the platform, fetch the
 *     manifest and config; write them to content with their gc.ref labels (index → m.<i>, manifest →
 *     config + l.<i>) and the distribution source label;
 *  2. fetch the layers in parallel (bounded), each straight from HTTP into Content.Write, resuming an
 *     interrupted ingest at the offset the content service reports (HTTP Range);
 *  3. unpack each layer as soon as it and the ones below it are in: Snapshots + Diff by chain ID, label the
 *     layer `containerd.io/uncompressed`;
 *  4. register the image (Create, or Update when it exists) and label the config
 *     `containerd.io/gc.ref.snapshot.<snapshotter>` with the top chain ID.
 */

import { ErrorCode, isAlreadyExists, isNotFound, notFound, ServiceError } from '@berth/common/errors';
import { chainIds, type Descriptor, isIndex, isManifest } from '@berth/common/oci';
import type { IngestSource } from '@berth/content/client';
import { createLease, deleteLease, listLeases } from './lease.js';
import type { CallContext, NodeClient } from './node-client.js';
import { parseConfig, parseIndex, parseManifest, refKey } from './oci.js';
import { formatPlatform, hostPlatform, type Platform, platformRank } from './platform.js';
import { parseReference } from './reference.js';
import type { Credentials } from './registry/auth.js';
import { RegistryClient } from './registry/registry.js';
import { unpackLayer } from './unpack.js';

export type BlobKind = 'index' | 'manifest' | 'config' | 'layer';

/** Progress of a pull, for progress bars and logs. Blob and unpack events are per layer and ordered per blob. */
export type PullEvent =
  | { readonly type: 'resolved'; readonly name: string; readonly target: Descriptor }
  | {
      readonly type: 'platform';
      readonly platform: Platform;
      readonly manifest: Descriptor;
      readonly layers: readonly Descriptor[];
    }
  | {
      readonly type: 'blob';
      readonly kind: BlobKind;
      readonly desc: Descriptor;
      /** waiting: queued behind the download limit; exists: already in the content store. */
      readonly state: 'waiting' | 'downloading' | 'exists' | 'done';
      /** Bytes in the content store so far. */
      readonly offset: number;
      /** Bytes that were already there from an earlier, interrupted pull. */
      readonly resumedFrom: number;
    }
  | {
      readonly type: 'unpack';
      readonly layer: number;
      readonly desc: Descriptor;
      readonly chainId: string;
      readonly state: 'applying' | 'exists' | 'done';
    }
  | { readonly type: 'image'; readonly name: string; readonly created: boolean };

export interface PullOptions {
  readonly ref: string;
  readonly namespace: string;
  /** HTTP instead of HTTPS (ctr's --plain-http). */
  readonly plainHttp?: boolean | undefined;
  readonly credentials?: Credentials | undefined;
  /** Default: the host platform. */
  readonly platform?: Platform | undefined;
  /** Unpack into snapshots. Default true. */
  readonly unpack?: boolean | undefined;
  /** Default: the namespace's `containerd.io/defaults/snapshotter` label, else overlayfs. */
  readonly snapshotter?: string | undefined;
  /** Layers downloaded at once. Default 3. */
  readonly maxConcurrentDownloads?: number | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly onEvent?: ((e: PullEvent) => void) | undefined;
  /** The HTTP client; default Node's fetch (undici). */
  readonly fetch?: typeof fetch | undefined;
}

export interface PullResult {
  /** The image name as stored (normalized reference). */
  readonly name: string;
  /** The image's target: the index or manifest the reference resolved to. */
  readonly target: Descriptor;
  readonly manifest: Descriptor;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  readonly platform: Platform;
  /** The chain ID of the top layer: the committed snapshot holding the rootfs (when unpacked). */
  readonly chainId: string;
  readonly snapshotter: string | undefined;
  /** Bytes downloaded from the registry (less than the image when blobs existed or ingests resumed). */
  readonly fetchedBytes: number;
}

const defaultSnapshotterLabel = 'containerd.io/defaults/snapshotter';
/** Marks a pull's lease with the image it is for, so a later pull of the image can clean up after a failed one. */
const pullRefLabel = 'berth.io/pull.ref';

export async function pull(node: NodeClient, opts: PullOptions): Promise<PullResult> {
  const ref = parseReference(opts.ref);
  const emit = opts.onEvent ?? (() => undefined);
  const registry = new RegistryClient(ref, {
    plainHttp: opts.plainHttp,
    credentials: opts.credentials,
    fetch: opts.fetch,
    userAgent: 'berth/0.1',
  });
  const platform = opts.platform ?? hostPlatform();
  // One failure stops the rest of the pull's work (downloads, unpack) promptly.
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const base: CallContext = { namespace: opts.namespace, lease: undefined, signal };
  const lease = await createLease(node, base, undefined, { [pullRefLabel]: ref.name });
  const ctx: CallContext = { ...base, lease };
  let succeeded = false;
  const sourceLabel = { [`containerd.io/distribution.source.${ref.domain}`]: ref.repository };
  try {
    const target = await registry.resolve(signal);
    emit({ type: 'resolved', name: ref.name, target });

    let manifestDesc = target;
    let indexData: Buffer | undefined;
    if (isIndex(target.mediaType)) {
      indexData = await registry.fetchDocument(target, signal);
      manifestDesc = selectManifest(parseIndex(indexData, target.mediaType), platform);
    } else if (!isManifest(target.mediaType)) {
      throw new ServiceError(
        ErrorCode.InvalidArgument,
        `${ref.name}: media type ${target.mediaType} is not an image manifest or index`,
      );
    }
    const manifestData = await registry.fetchDocument(manifestDesc, signal);
    const manifest = parseManifest(manifestData, manifestDesc.mediaType);
    const configData = await registry.fetchDocument(manifest.config, signal);
    const config = parseConfig(configData);
    if (config.diffIds.length !== manifest.layers.length) {
      throw new ServiceError(
        ErrorCode.InvalidArgument,
        `${ref.name}: manifest has ${manifest.layers.length} layers, config ${config.diffIds.length} diff ids`,
      );
    }
    emit({ type: 'platform', platform, manifest: manifestDesc, layers: manifest.layers });

    const writeDocument = async (
      kind: BlobKind,
      desc: Descriptor,
      data: Buffer,
      gcLabels: Record<string, string>,
    ): Promise<void> => {
      const labels = { ...gcLabels, ...sourceLabel };
      const r = await node.content.ingest(ctx, bufferSource(data), { ref: refKey(desc), desc, labels });
      // A blob that was already there gets the labels this image needs, as ctr's handlers set them.
      if (r.state === 'exists') await node.content.updateLabels(ctx, desc.digest, labels);
      emit({
        type: 'blob',
        kind,
        desc,
        state: r.state === 'exists' ? 'exists' : 'done',
        offset: desc.size,
        resumedFrom: 0,
      });
    };
    const manifestLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': manifest.config.digest };
    for (const [i, l] of manifest.layers.entries()) manifestLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest;
    // The documents are written while the layers download (all under the lease, so order does not matter to gc).
    const documents = Promise.all([
      indexData
        ? writeDocument('index', target, indexData, { 'containerd.io/gc.ref.content.m.0': manifestDesc.digest })
        : undefined,
      writeDocument('manifest', manifestDesc, manifestData, manifestLabels),
      writeDocument('config', manifest.config, configData, {}),
    ]);

    let fetchedBytes = 0;
    const limit = semaphore(Math.max(1, opts.maxConcurrentDownloads ?? 3));
    for (const desc of manifest.layers)
      emit({ type: 'blob', kind: 'layer', desc, state: 'waiting', offset: 0, resumedFrom: 0 });
    const layerDone = manifest.layers.map((desc) =>
      limit(async () => {
        signal.throwIfAborted();
        const source: IngestSource = { open: (offset, s) => registry.openBlob(desc, offset, s) };
        let resumed = 0;
        const r = await node.content.ingest(ctx, source, {
          ref: refKey(desc),
          desc,
          labels: sourceLabel,
          onProgress: (offset, resumedFrom) => {
            resumed = resumedFrom;
            emit({ type: 'blob', kind: 'layer', desc, state: 'downloading', offset, resumedFrom });
          },
        });
        if (r.state === 'written') fetchedBytes += r.fetched;
        else await node.content.updateLabels(ctx, desc.digest, sourceLabel);
        emit({
          type: 'blob',
          kind: 'layer',
          desc,
          state: r.state === 'exists' ? 'exists' : 'done',
          offset: desc.size,
          resumedFrom: resumed,
        });
      }),
    );
    const chain = chainIds(config.diffIds);
    const unpack = opts.unpack ?? true;
    const unpacking = unpack
      ? (async (): Promise<string> => {
          const snapshotter = opts.snapshotter ?? (await defaultSnapshotter(node, ctx));
          for (const [i, desc] of manifest.layers.entries()) {
            await layerDone[i];
            const chainId = chain[i] ?? '';
            const diffId = config.diffIds[i] ?? '';
            emit({ type: 'unpack', layer: i, desc, chainId, state: 'applying' });
            const r = await unpackLayer(node, ctx, snapshotter, { desc, diffId, chainId, parent: chain[i - 1] ?? '' });
            if (r === 'applied')
              await node.content.updateLabels(ctx, desc.digest, { 'containerd.io/uncompressed': diffId });
            emit({ type: 'unpack', layer: i, desc, chainId, state: r === 'applied' ? 'done' : 'exists' });
          }
          return snapshotter;
        })()
      : undefined;

    const [snapshotter] = await allOrStop(stop, [unpacking ?? Promise.resolve(undefined), documents, ...layerDone]);
    const created = await registerImage(node, ctx, ref.name, target);
    emit({ type: 'image', name: ref.name, created });
    const top = chain[chain.length - 1];
    if (snapshotter !== undefined && top !== undefined) {
      await node.content.updateLabels(ctx, manifest.config.digest, {
        [`containerd.io/gc.ref.snapshot.${snapshotter}`]: top,
      });
    }
    succeeded = true;
    return {
      name: ref.name,
      target,
      manifest: manifestDesc,
      config: manifest.config,
      layers: manifest.layers,
      platform,
      chainId: top ?? '',
      snapshotter,
      fetchedBytes,
    };
  } finally {
    stop.abort();
    // A failed or interrupted pull keeps its lease (until gc.expire): containerd drops a leased ingest with
    // its lease, and the partial downloads are what the next pull resumes from. The pull that succeeds
    // deletes its own lease and those its failed predecessors left.
    if (succeeded) {
      const stale = await listLeases(node, { ...base, signal: AbortSignal.timeout(30_000) }, [
        `labels."${pullRefLabel}"==${JSON.stringify(ref.name)}`,
      ]).catch(() => []);
      for (const id of new Set([lease, ...stale])) await deleteLease(node, opts.namespace, id);
    }
  }
}

/** The manifest of `manifests` that serves `platform` best; not_found when none does (containerd's wording). */
export function selectManifest(manifests: readonly Descriptor[], platform: Platform): Descriptor {
  let best: { desc: Descriptor; rank: number } | undefined;
  for (const m of manifests) {
    if (!m.platform || !isManifest(m.mediaType)) continue;
    const rank = platformRank(platform, m.platform);
    if (rank !== undefined && (best === undefined || rank < best.rank)) best = { desc: m, rank };
  }
  if (!best) throw notFound(`no match for platform ${formatPlatform(platform)} in manifest`);
  return best.desc;
}

/** Images.Create; AlreadyExists → Update (replacing target and labels); NotFound there → Create again (pull.go). */
async function registerImage(node: NodeClient, ctx: CallContext, name: string, target: Descriptor): Promise<boolean> {
  const image = { name, labels: {}, target };
  for (let attempt = 0; ; attempt++) {
    try {
      await node.images.create(ctx, image);
      return true;
    } catch (e) {
      if (!isAlreadyExists(e)) throw e;
    }
    try {
      await node.images.update(ctx, image);
      return false;
    } catch (e) {
      if (!isNotFound(e) || attempt > 2) throw e;
    }
  }
}

async function defaultSnapshotter(node: NodeClient, ctx: CallContext): Promise<string> {
  const ns = await node.namespaces.get(ctx, ctx.namespace ?? '');
  return ns.labels[defaultSnapshotterLabel] || 'overlayfs';
}

function bufferSource(data: Buffer): IngestSource {
  return {
    open: async (offset) => ({ start: offset, body: [data.subarray(offset)] }),
  };
}

/** A limiter: at most `n` of the functions given run at once, in the order given. */
function semaphore(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let running = 0;
  const queue: (() => void)[] = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (running >= n) await new Promise<void>((resolve) => queue.push(resolve));
    running++;
    try {
      return await fn();
    } finally {
      running--;
      queue.shift()?.();
    }
  };
}

/**
 * Waits for all; on the first failure aborts `stop` (so the others end soon), waits for them to settle,
 * and rethrows that first failure rather than the cancellations it caused.
 */
async function allOrStop<T extends readonly unknown[]>(
  stop: AbortController,
  ps: readonly [...{ [K in keyof T]: Promise<T[K]> }],
): Promise<T> {
  let first: { error: unknown } | undefined;
  const watched = ps.map((p) =>
    (p as Promise<unknown>).catch((e: unknown) => {
      if (!first) {
        first = { error: e };
        stop.abort();
      }
      throw e;
    }),
  );
  const settled = await Promise.allSettled(watched);
  if (first) throw first.error;
  return settled.map((s) => (s.status === 'fulfilled' ? s.value : undefined)) as unknown as T;
}
