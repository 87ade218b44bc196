import type { BlobStore } from './blob-store.js';
import { createFsBlobStore } from './fs-blob-store.js';
import type { S3Options } from './s3-blob-store.js';

export type { BlobStore, Ingest } from './blob-store.js';
export type { S3Options } from './s3-blob-store.js';

/** Which backend holds the bytes: the local filesystem (default) or an S3 bucket. */
export type BlobBackendConfig = { readonly kind: 'fs'; readonly root: string } | ({ readonly kind: 's3' } & S3Options);

export async function createBlobStore(cfg: BlobBackendConfig): Promise<BlobStore> {
  switch (cfg.kind) {
    case 'fs':
      return createFsBlobStore(cfg.root);
    case 's3':
      // Loaded only for this backend: the minio client and its dependencies are 6 MB of heap.
      return (await import('./s3-blob-store.js')).createS3BlobStore(cfg);
  }
}
