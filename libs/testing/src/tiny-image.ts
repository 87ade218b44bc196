import { MediaType, sha256 } from '@berth/common/oci';

export const ociIndexType = MediaType.ociIndex;
export const ociManifestType = MediaType.ociManifest;

export interface TinyImage {
  /** The blobs bottom-up, named by kind: layer, config, manifest, index (the order to ingest them). */
  readonly blobs: ReadonlyArray<readonly ['layer' | 'config' | 'manifest' | 'index', Buffer]>;
  /** The image's target: the OCI index. */
  readonly index: { readonly mediaType: string; readonly digest: string; readonly size: number };
  /** Sum of all blob sizes, as `ctr images ls` reports it. */
  readonly totalSize: number;
  /**
   * The gc reference labels a client sets on each blob as it commits it (index → manifest → config and
   * layer), without which containerd's collector removes the children of an image's target.
   */
  readonly gcLabels: Readonly<Record<'layer' | 'config' | 'manifest' | 'index', Readonly<Record<string, string>>>>;
}

/**
 * A linux/amd64 OCI image held in memory, index → manifest → config + one layer whose bytes are `layer`
 * (not a real tar: for metadata and listing tests that never unpack it).
 */
export function tinyImage(layer: Buffer): TinyImage {
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] } }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifestType,
      config: { mediaType: MediaType.ociConfig, digest: sha256(config), size: config.length },
      layers: [{ mediaType: MediaType.ociLayer, digest: sha256(layer), size: layer.length }],
    }),
  );
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociIndexType,
      manifests: [
        {
          mediaType: ociManifestType,
          digest: sha256(manifest),
          size: manifest.length,
          platform: { architecture: 'amd64', os: 'linux' },
        },
      ],
    }),
  );
  return {
    blobs: [
      ['layer', layer],
      ['config', config],
      ['manifest', manifest],
      ['index', index],
    ],
    index: { mediaType: ociIndexType, digest: sha256(index), size: index.length },
    totalSize: layer.length + config.length + manifest.length + index.length,
    gcLabels: {
      layer: {},
      config: {},
      manifest: {
        'containerd.io/gc.ref.content.config': sha256(config),
        'containerd.io/gc.ref.content.l.0': sha256(layer),
      },
      index: { 'containerd.io/gc.ref.content.m.0': sha256(manifest) },
    },
  };
}
