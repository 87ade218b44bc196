/**
 * @berth/common/oci: the core OCI vocabulary every service and client shares — descriptors and their wire
 * form, media types, digests (go-digest's validation) and chain ids.
 */
export { type Descriptor, descriptorFromProto, descriptorToProto, type Platform } from './descriptor.js';
export { chainIds, DigestError, digestProblem, sha256 } from './digest.js';
export { isConfig, isIndex, isLayer, isManifest, MediaType } from './media-types.js';
