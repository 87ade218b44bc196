/**
 * Images and snapshots as `ctr images ls / rm` and `ctr snapshots ls` show them: the image records of
 * the Images service, sized and described by walking their content (index → manifest → config).
 */

import { type Descriptor, isIndex, isManifest } from '@berth/common/oci';
import type { ImageRecord } from '@berth/metadata/client';
import type { SnapshotInfo } from '@berth/snapshots/client';
import type { CallContext, NodeClient } from './node-client.js';
import { parseConfig, parseIndex, parseManifest, verify } from './oci.js';
import { formatPlatform, hostPlatform, normalizePlatform, type Platform, platformRank } from './platform.js';

/** A blob's bytes through Content.Read (server stream), verified against its descriptor. */
export async function readBlob(node: NodeClient, ctx: CallContext, desc: Descriptor): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of node.content.read(ctx, desc.digest)) parts.push(b);
  const data = Buffer.concat(parts);
  verify(desc, data);
  return data;
}

export interface ImageSummary {
  readonly name: string;
  readonly target: Descriptor;
  readonly labels: Readonly<Record<string, string>>;
  /** Bytes of the content the image needs on `platform` (index, manifest, config, layers); undefined if some is missing. */
  readonly size: number | undefined;
  /** Every platform the image offers, sorted (`linux/amd64`, …). */
  readonly platforms: readonly string[];
  readonly createdAt: Date | undefined;
}

/** Images.List with containerd filters, each image sized and described from the content store. */
export async function listImages(
  node: NodeClient,
  ctx: CallContext,
  filters: readonly string[] = [],
  platform: Platform = hostPlatform(),
): Promise<ImageSummary[]> {
  const images = await node.images.list(ctx, filters);
  return Promise.all(images.map((img) => summarize(node, ctx, img, platform)));
}

export function getImage(node: NodeClient, ctx: CallContext, name: string): Promise<ImageRecord> {
  return node.images.get(ctx, name);
}

/** Images.Delete; the server's garbage collection then removes what only this image referenced. */
export async function removeImage(node: NodeClient, ctx: CallContext, name: string, sync = false): Promise<void> {
  await node.images.delete(ctx, name, sync);
}

async function summarize(
  node: NodeClient,
  ctx: CallContext,
  img: ImageRecord,
  platform: Platform,
): Promise<ImageSummary> {
  const target = img.target;
  const platforms = new Set<string>();
  let size: number | undefined = 0;
  const add = (n: number): void => {
    if (size !== undefined) size += n;
  };
  const walkManifest = async (desc: Descriptor, listed: Platform | undefined): Promise<void> => {
    if (listed) platforms.add(formatPlatform(normalizePlatform(listed)));
    if (listed && platformRank(platform, listed) === undefined) return;
    const m = parseManifest(await readBlob(node, ctx, desc), desc.mediaType);
    add(desc.size + m.config.size + m.layers.reduce((s, l) => s + l.size, 0));
    if (!listed) {
      const c = parseConfig(await readBlob(node, ctx, m.config));
      if (c.platform.os && c.platform.architecture) platforms.add(formatPlatform(normalizePlatform(c.platform)));
    }
  };
  try {
    if (isIndex(target.mediaType)) {
      add(target.size);
      for (const m of parseIndex(await readBlob(node, ctx, target), target.mediaType)) {
        if (isManifest(m.mediaType)) await walkManifest(m, m.platform);
      }
    } else if (isManifest(target.mediaType)) {
      await walkManifest(target, undefined);
    }
  } catch {
    // Content that is not (or not all) there: ctr logs and shows what it could; so do we.
    size = undefined;
  }
  return {
    name: img.name,
    target,
    labels: img.labels,
    size,
    platforms: [...platforms].sort(),
    createdAt: img.createdAt,
  };
}

export interface SnapshotSummary {
  readonly key: string;
  readonly parent: string;
  readonly kind: 'View' | 'Active' | 'Committed' | 'Unknown';
  readonly labels: Readonly<Record<string, string>>;
}

const kindNames: Record<SnapshotInfo['kind'], SnapshotSummary['kind']> = {
  view: 'View',
  active: 'Active',
  committed: 'Committed',
  unknown: 'Unknown',
};

/** Snapshots.List (server stream) of one snapshotter, with containerd filters. */
export async function listSnapshots(
  node: NodeClient,
  ctx: CallContext,
  snapshotter: string,
  filters: readonly string[] = [],
): Promise<SnapshotSummary[]> {
  const infos = await node.snapshots.list(ctx, snapshotter, filters);
  return infos.map((i) => ({ key: i.name, parent: i.parent, kind: kindNames[i.kind], labels: i.labels }));
}

/** Bytes in ctr's style (`progress.Bytes`): 1024-based units with one decimal, e.g. `1.0 MiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}
