import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { backgroundContext, type RequestContext, requireNamespace } from '@berth/common/context';
import type { Logger } from '@berth/common/log';
import { type Descriptor, isManifest } from '@berth/common/oci';
import { spreadSubdirectories } from '@berth/common/spread-dirs';
import type { WriteTap } from '@berth/content';
import type { ContentClient } from '@berth/content/client';
import type { Extract, Extracted } from '../apply/extract.js';
import { compressionOf } from '../apply/media-types.js';
import { byteQueue } from './byte-queue.js';

/**
 * Unpack-ahead: a client unpacks an image one layer at a time (Prepare, Apply, Commit, then the next layer on
 * top), as containerd 1.6's unpacker and `ctr` do. On overlayfs a layer's upper directory does not depend on
 * the layers below it but for the attributes of the directories it implies, so the layers after the one being
 * applied can be extracted at the same time, each into a directory of its own on the snapshots' filesystem;
 * when the client's Apply for one of them comes, its tree is moved into the new snapshot's (empty) upper
 * directory and the implied directories take their attributes from the real parents. The result is the tree
 * and the diffID the Apply would have made itself; only the wall time changes.
 *
 * Which layers follow: the manifest that lists the applied layer (content labels
 * `containerd.io/gc.ref.content.l.<i>`, set by every pull), the most recently updated one when several do.
 * A guess that is wrong costs background work: a staged tree not taken within `ttlMs` is removed, and the
 * extractions of a namespace where no Apply or Write has run for `idleMs` (the client went away) are stopped.
 */
export interface UnpackAhead {
  /** An Apply of `desc` begins: start extracting the layers that follow it in its image. Never throws. */
  notice(ctx: RequestContext, desc: Descriptor): void;
  /**
   * A Write committed a blob on this node (in-process content): a manifest's layers are then awaited, and a
   * layer awaited is extracted at once, while the rest of the image still downloads. Never throws.
   */
  committed(ns: string, digest: string, size: number): void;
  /**
   * A Write of `expected` opened on this node: an awaited layer is extracted from its bytes as they arrive
   * (when an extraction slot is free), through the tap returned. Never throws.
   */
  opened(ns: string, expected: string, total: number): WriteTap | undefined;
  /**
   * A call of the namespace's pulls (an Apply, a Write, a Snapshots call on this node) runs until the function
   * returned is called. When a namespace has had no such call for `idleMs`, nobody pulls there any more (the
   * client went away): its extractions not taken are stopped and their trees removed; at once when the last
   * call ended because its client went away (`clientGone`). Never throws.
   */
  active(ns: string): (clientGone?: boolean) => void;
  /**
   * The staged extraction of `desc` in the namespace (once done), handed over; undefined when there is none
   * or it failed. A prediction still being made for the namespace is waited for first. If `ctx` is cancelled
   * while the extraction still runs, the extraction is stopped.
   */
  take(ctx: RequestContext, desc: Descriptor): Promise<Staged | undefined>;
  readonly stats: UnpackAheadStats;
  close(): Promise<void>;
}

export interface Staged extends Extracted {
  /** The layer's tree, in overlay form; the taker moves it and then calls `release`. */
  readonly dir: string;
  release(): Promise<void>;
}

export interface UnpackAheadStats {
  /** Extractions started ahead of their Apply. */
  started: number;
  /** Staged trees handed to an Apply. */
  taken: number;
  /** Staged trees removed unused (expired, failed, or at close). */
  discarded: number;
}

export interface UnpackAheadDeps {
  readonly content: ContentClient;
  readonly extract: Extract;
  /** Staging directories; on the filesystem of the snapshots' upper directories, so a tree moves by rename. */
  readonly root: string;
  readonly log: Logger;
  /** Extractions running at once (each is a decompressor and a tar process). */
  readonly concurrency?: number;
  /** How long a staged tree waits for its Apply. */
  readonly ttlMs?: number;
  /** How long a namespace with no Apply or Write running keeps its extractions (see `active`). */
  readonly idleMs?: number;
}

/** The most layer indexes asked about per lookup: images deeper than this are predicted from a later layer. */
const maxLayerIndex = 128;
const maxManifestBytes = 4 * 1024 * 1024;
/** Bytes of a layer being written held for its extraction before the writer waits. */
const tapBufferBytes = 8 * 1024 * 1024;

interface Entry {
  readonly promise: Promise<Staged | undefined>;
  /** Stops the extraction (its tar and decompressor end, its directory is removed). */
  readonly abort: () => void;
  /** Set once the extraction settled with a tree: the expiry timer. */
  timer?: NodeJS.Timeout;
  taken: boolean;
}

export async function createUnpackAhead(deps: UnpackAheadDeps): Promise<UnpackAhead> {
  // A tree staged by an earlier process has no Apply waiting for it.
  await rm(deps.root, { recursive: true, force: true });
  // Staged trees hold whatever images hold (setuid binaries too): only root may reach them, as snapshots.
  await mkdir(deps.root, { recursive: true, mode: 0o700 });
  await chmod(deps.root, 0o700);
  // Trees staged here become snapshots' trees (moved, not copied): they start in block groups of their own.
  spreadSubdirectories(deps.root);
  const concurrency = deps.concurrency ?? 2;
  const ttlMs = deps.ttlMs ?? 60_000;
  // Between one Apply of a pull and the next come a Commit and a Prepare: tens of milliseconds, rarely more.
  const idleMs = deps.idleMs ?? 1_000;
  const stopped = new AbortController();
  const entries = new Map<string, Entry>();
  /** Layers of manifests already predicted, so their own Applies do not look the manifest up again. */
  const predicted = new Map<string, number>();
  /** Layers of manifests committed lately, by namespace and digest: extracted once their own blob commits. */
  const awaited = new Map<string, { desc: Descriptor; at: number }>();
  /** Layers being extracted from their Write's bytes: their commit needs nothing more. */
  const tapping = new Set<string>();
  /** Predictions being made, per namespace. */
  const predicting = new Map<string, Set<Promise<void>>>();
  const queue: Array<() => void> = [];
  let running = 0;
  const stats: UnpackAheadStats = { started: 0, taken: 0, discarded: 0 };
  const keyOf = (ns: string, d: Descriptor) => `${ns}\n${d.digest}\n${d.mediaType}`;

  const slot = async (): Promise<() => void> => {
    if (running >= concurrency) await new Promise<void>((r) => queue.push(r));
    running++;
    return () => {
      running--;
      queue.shift()?.();
    };
  };

  const discard = async (dir: string): Promise<void> => {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    stats.discarded++;
  };

  const start = (ns: string, desc: Descriptor, tapped?: ReturnType<typeof byteQueue>): void => {
    const key = keyOf(ns, desc);
    if (entries.has(key) || stopped.signal.aborted) {
      tapped?.close();
      return;
    }
    const own = new AbortController();
    const entry: Entry = { taken: false, promise: Promise.resolve(undefined), abort: () => own.abort() };
    const ctx = backgroundContext(deps.log, ns, AbortSignal.any([stopped.signal, own.signal]));
    const dir = join(deps.root, `${desc.digest.replace(/^.*:/, '').slice(0, 16)}-${randomBytes(4).toString('hex')}`);
    const run = async (): Promise<Staged | undefined> => {
      const done = await slot();
      try {
        if (ctx.signal.aborted) return undefined;
        stats.started++;
        await mkdir(dir);
        const extracted = await deps.extract(
          ctx,
          desc,
          { root: dir, whiteouts: 'overlay', parents: [] },
          tapped && { bytes: tapped.source, verified: true },
        );
        return { ...extracted, dir, release: () => rm(dir, { recursive: true, force: true }) };
      } catch (e) {
        if (!ctx.signal.aborted) deps.log.debug('unpack-ahead failed', { digest: desc.digest, error: String(e) });
        await discard(dir);
        return undefined;
      } finally {
        tapped?.close();
        done();
      }
    };
    const promise = run().then((staged) => {
      if (!staged) entries.delete(key);
      else if (!entry.taken) {
        entry.timer = setTimeout(() => {
          if (entries.get(key) === entry && !entry.taken) {
            entries.delete(key);
            void discard(staged.dir);
          }
        }, ttlMs);
        entry.timer.unref();
      }
      return staged;
    });
    entries.set(key, Object.assign(entry, { promise }));
  };

  /** Running calls per namespace, and the timer that gives up its extractions once there are none. */
  const activity = new Map<string, { calls: number; timer?: NodeJS.Timeout }>();
  const giveUp = (ns: string): void => {
    const prefix = `${ns}\n`;
    for (const [key, e] of entries) {
      if (!key.startsWith(prefix) || e.taken) continue;
      entries.delete(key);
      clearTimeout(e.timer);
      e.abort();
      void e.promise.then((staged) => staged && discard(staged.dir));
    }
    for (const k of awaited.keys()) if (k.startsWith(prefix)) awaited.delete(k);
    for (const k of predicted.keys()) if (k.startsWith(prefix)) predicted.delete(k);
  };

  const readManifest = async (ctx: RequestContext, digest: string): Promise<Descriptor[] | undefined> => {
    const chunks: Buffer[] = [];
    for await (const b of deps.content.read(ctx, digest)) chunks.push(b);
    return manifestLayers(Buffer.concat(chunks));
  };

  const predict = async (ctx: RequestContext, ns: string, desc: Descriptor): Promise<void> => {
    const filters = Array.from(
      { length: maxLayerIndex },
      (_, i) => `labels."containerd.io/gc.ref.content.l.${i}"==${JSON.stringify(desc.digest)}`,
    );
    const candidates = await deps.content.list(ctx, filters);
    candidates.sort((a, b) => (b.updatedAt?.getTime() ?? 0) - (a.updatedAt?.getTime() ?? 0));
    for (const c of candidates) {
      if (c.size > maxManifestBytes) continue;
      const layers = await readManifest(ctx, c.digest);
      const at = layers?.findIndex((l) => l.digest === desc.digest) ?? -1;
      if (!layers || at < 0) continue;
      const now = Date.now();
      for (const l of layers) predicted.set(`${ns}\n${l.digest}`, now);
      for (const l of layers.slice(at + 1)) if (supported(l.mediaType)) start(ns, l);
      return;
    }
  };

  return {
    stats,
    active(ns) {
      const a = activity.get(ns) ?? { calls: 0 };
      activity.set(ns, a);
      a.calls++;
      clearTimeout(a.timer);
      let ended = false;
      return (clientGone = false) => {
        if (ended) return;
        ended = true;
        if (--a.calls > 0) return;
        if (clientGone) {
          activity.delete(ns);
          giveUp(ns);
          return;
        }
        a.timer = setTimeout(() => {
          if (a.calls > 0 || activity.get(ns) !== a) return;
          activity.delete(ns);
          giveUp(ns);
        }, idleMs);
        a.timer.unref();
      };
    },
    opened(ns, digest, _total) {
      const key = `${ns}\n${digest}`;
      const layer = awaited.get(key);
      if (!layer || stopped.signal.aborted || running >= concurrency) return undefined;
      awaited.delete(key);
      tapping.add(key);
      const queue = byteQueue(tapBufferBytes);
      start(ns, layer.desc, queue);
      return {
        push: (chunk) => queue.push(chunk),
        end: (committed) => queue.end(committed),
      };
    },
    committed(ns, digest, size) {
      if (stopped.signal.aborted) return;
      if (tapping.delete(`${ns}\n${digest}`)) return;
      const now = Date.now();
      for (const [k, a] of awaited) if (now - a.at >= ttlMs) awaited.delete(k);
      const layer = awaited.get(`${ns}\n${digest}`);
      if (layer) {
        awaited.delete(`${ns}\n${digest}`);
        start(ns, layer.desc);
        return;
      }
      if (size > maxManifestBytes) return;
      readManifest(backgroundContext(deps.log, ns, stopped.signal), digest)
        .then((layers) => {
          for (const l of layers ?? [])
            if (supported(l.mediaType)) awaited.set(`${ns}\n${l.digest}`, { desc: l, at: now });
        })
        .catch((e: unknown) => {
          if (!stopped.signal.aborted) deps.log.debug('unpack-ahead: committed blob unread', { error: String(e) });
        });
    },
    notice(ctx, desc) {
      const ns = ctx.namespace;
      if (!ns || stopped.signal.aborted) return;
      const seen = predicted.get(`${ns}\n${desc.digest}`);
      if (seen !== undefined && Date.now() - seen < ttlMs) return;
      for (const [k, t] of predicted) if (Date.now() - t >= ttlMs) predicted.delete(k);
      predicted.set(`${ns}\n${desc.digest}`, Date.now());
      const bg = backgroundContext(deps.log, ns, stopped.signal);
      const mine = predicting.get(ns) ?? new Set();
      predicting.set(ns, mine);
      const p: Promise<void> = predict(bg, ns, desc)
        .catch((e: unknown) => {
          if (!stopped.signal.aborted) deps.log.debug('unpack-ahead: no prediction', { error: String(e) });
        })
        .finally(() => {
          mine.delete(p);
          if (mine.size === 0 && predicting.get(ns) === mine) predicting.delete(ns);
        });
      mine.add(p);
    },
    async take(ctx, desc) {
      const ns = requireNamespace(ctx);
      const inFlight = predicting.get(ns);
      if (inFlight) await Promise.all(inFlight);
      const key = keyOf(ns, desc);
      const entry = entries.get(key);
      if (!entry) return undefined;
      entries.delete(key);
      entry.taken = true;
      clearTimeout(entry.timer);
      stats.taken++;
      // The extraction is this call's now: a client that goes away ends it, as it would its own.
      const onAbort = (): void => entry.abort();
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      return entry.promise.finally(() => ctx.signal.removeEventListener('abort', onAbort));
    },
    async close() {
      stopped.abort();
      for (const a of activity.values()) clearTimeout(a.timer);
      const left = [...entries.values()];
      entries.clear();
      for (const e of left) clearTimeout(e.timer);
      await Promise.all(
        left.map(async (e) => {
          const staged = await e.promise;
          if (staged && !e.taken) await discard(staged.dir);
        }),
      );
      await rm(deps.root, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

function supported(mediaType: string): boolean {
  try {
    compressionOf(mediaType);
    return true;
  } catch {
    return false;
  }
}

/** The layers of an image manifest (OCI or Docker schema 2); undefined for anything else. */
function manifestLayers(bytes: Buffer): Descriptor[] | undefined {
  let m: unknown;
  try {
    m = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null) return undefined;
  const { mediaType, layers, config } = m as { mediaType?: unknown; layers?: unknown; config?: unknown };
  if (typeof mediaType === 'string' && !isManifest(mediaType)) return undefined;
  if (!Array.isArray(layers) || typeof config !== 'object') return undefined;
  const out: Descriptor[] = [];
  for (const l of layers as unknown[]) {
    const { mediaType: mt, digest, size } = (l ?? {}) as { mediaType?: unknown; digest?: unknown; size?: unknown };
    if (typeof mt !== 'string' || typeof digest !== 'string' || typeof size !== 'number') return undefined;
    out.push({ mediaType: mt, digest, size });
  }
  return out;
}
