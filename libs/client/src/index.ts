/**
 * @berth/client: what `ctr` does on the client side, against any containerd-compatible node socket
 * (berthd or containerd itself): pull (distribution protocol → Content.Write → Images), unpack
 * (Snapshots + Diff by chain ID), list and remove images, list snapshots.
 */

export { chainIds, type Descriptor, MediaType } from '@berth/common/oci';
export {
  formatBytes,
  getImage,
  type ImageSummary,
  listImages,
  listSnapshots,
  readBlob,
  removeImage,
  type SnapshotSummary,
} from './images.js';
export { createLease, deleteLease } from './lease.js';
export { type CallContext, connectNode, type NodeClient } from './node-client.js';
export { parseConfig, parseIndex, parseManifest, refKey } from './oci.js';
export { formatPlatform, hostPlatform, type Platform, parsePlatform } from './platform.js';
export { type BlobKind, type PullEvent, type PullOptions, type PullResult, pull, selectManifest } from './pull.js';
export { parseReference, type Reference } from './reference.js';
export type { Credentials } from './registry/auth.js';
export { type UnpackLayer, unpackLayer } from './unpack.js';
