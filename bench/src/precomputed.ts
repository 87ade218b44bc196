import { createHash } from 'node:crypto';
import type { InfoResponse, ReadContentResponse } from '@berth/proto/containerd/services/content/v1/content';
import type { Image } from '@berth/proto/containerd/services/images/v1/images';
import { tinyImage } from '@berth/testing/tiny-image';
import { imageRecord } from './image-records.js';

/** The answers of the metadata bench's floor servers, built once at start: by blob digest, and the list. */
export interface Precomputed {
  readonly info: ReadonlyMap<string, InfoResponse>;
  readonly read: ReadonlyMap<string, ReadContentResponse>;
  readonly images: readonly Image[];
}

export function precomputed(count: number): Precomputed {
  const image = tinyImage(Buffer.from('bench layer bytes'));
  const now = new Date();
  const info = new Map<string, InfoResponse>();
  const read = new Map<string, ReadContentResponse>();
  for (const [kind, blob] of image.blobs) {
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    info.set(digest, {
      info: { digest, size: blob.length, createdAt: now, updatedAt: now, labels: image.gcLabels[kind] },
    });
    read.set(digest, { offset: 0, data: blob });
  }
  const images = Array.from({ length: count }, (_, i) => ({
    ...imageRecord(i, image),
    createdAt: now,
    updatedAt: now,
  }));
  return { info, read, images };
}
