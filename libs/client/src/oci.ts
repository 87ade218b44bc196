/**
 * OCI image-spec and Docker schema 2 documents as a registry serves them: parsing of the JSON (index/manifest
 * list, manifest, config), validated before the pull trusts it. The vocabulary (media types, descriptors,
 * digests) is @berth/common/oci's.
 */
import { invalidArgument } from '@berth/common/errors';
import {
  type Descriptor,
  isConfig,
  isIndex,
  isLayer,
  isManifest,
  MediaType,
  type Platform,
  sha256,
} from '@berth/common/oci';

/** What a registry is asked for when resolving a tag, in containerd's order of preference. */
export const manifestAccept = [
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.ociIndex,
  '*/*',
].join(', ');

/** The ingest ref prefix containerd uses per kind of blob (`remotes.MakeRefKey`), so refs match ctr's. */
export function refKey(desc: Descriptor): string {
  const kind = isIndex(desc.mediaType)
    ? 'index'
    : isManifest(desc.mediaType)
      ? 'manifest'
      : isConfig(desc.mediaType)
        ? 'config'
        : isLayer(desc.mediaType)
          ? 'layer'
          : 'unknown';
  return `${kind}-${desc.digest}`;
}

const digestPattern = /^sha256:[a-f0-9]{64}$/;

/** Checks that `data` is what `desc` promises (size and sha256 digest). */
export function verify(desc: Descriptor, data: Buffer): void {
  if (data.length !== desc.size)
    throw invalidArgument(`${desc.digest}: got ${data.length} bytes, descriptor says ${desc.size}`);
  const got = sha256(data);
  if (got !== desc.digest) throw invalidArgument(`${desc.digest}: content has digest ${got}`);
}

function object(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidArgument(`${what}: not a JSON object`);
  return v as Record<string, unknown>;
}

function parseJson(data: Buffer, what: string): Record<string, unknown> {
  try {
    return object(JSON.parse(data.toString('utf8')), what);
  } catch (e) {
    throw invalidArgument(`${what}: invalid JSON`, e);
  }
}

export function parseDescriptor(v: unknown, what: string): Descriptor {
  const o = object(v, what);
  const { mediaType, digest, size, annotations, platform } = o;
  if (typeof mediaType !== 'string' || mediaType === '') throw invalidArgument(`${what}: mediaType missing`);
  if (typeof digest !== 'string' || !digestPattern.test(digest))
    throw invalidArgument(`${what}: unsupported digest ${JSON.stringify(digest)}`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
    throw invalidArgument(`${what}: invalid size`);
  let p: Platform | undefined;
  if (platform !== undefined) {
    const po = object(platform, `${what} platform`);
    if (typeof po['os'] !== 'string' || typeof po['architecture'] !== 'string')
      throw invalidArgument(`${what}: platform needs os and architecture`);
    p = {
      os: po['os'],
      architecture: po['architecture'],
      variant: typeof po['variant'] === 'string' ? po['variant'] : undefined,
    };
  }
  const ann =
    annotations === undefined
      ? undefined
      : Object.fromEntries(
          Object.entries(object(annotations, `${what} annotations`)).filter(
            (e): e is [string, string] => typeof e[1] === 'string',
          ),
        );
  return { mediaType, digest, size, annotations: ann, platform: p };
}

/**
 * A JSON value for an error message. Not `String(v)`: a document can make that throw (an array holding
 * `{"toString": ""}`), which would turn a bad manifest into a TypeError instead of invalid_argument.
 */
const show = (v: unknown): string => JSON.stringify(v) ?? typeof v;

/** The manifests an index (or Docker manifest list) lists. */
export function parseIndex(data: Buffer, mediaType: string): Descriptor[] {
  const o = parseJson(data, 'index');
  if (o['mediaType'] !== undefined && o['mediaType'] !== mediaType)
    throw invalidArgument(`index: mediaType ${show(o['mediaType'])} differs from ${mediaType}`);
  if (!Array.isArray(o['manifests'])) throw invalidArgument('index: manifests missing');
  return o['manifests'].map((m, i) => parseDescriptor(m, `index manifests[${i}]`));
}

export interface Manifest {
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
}

export function parseManifest(data: Buffer, mediaType: string): Manifest {
  const o = parseJson(data, 'manifest');
  if (o['schemaVersion'] !== 2)
    throw invalidArgument(`manifest: schemaVersion ${show(o['schemaVersion'])} is not supported`);
  if (o['mediaType'] !== undefined && o['mediaType'] !== mediaType)
    throw invalidArgument(`manifest: mediaType ${show(o['mediaType'])} differs from ${mediaType}`);
  if (!Array.isArray(o['layers'])) throw invalidArgument('manifest: layers missing');
  return {
    config: parseDescriptor(o['config'], 'manifest config'),
    layers: o['layers'].map((l, i) => parseDescriptor(l, `manifest layers[${i}]`)),
  };
}

export interface ImageConfig {
  readonly diffIds: readonly string[];
  readonly platform: Platform;
}

export function parseConfig(data: Buffer): ImageConfig {
  const o = parseJson(data, 'image config');
  const rootfs = object(o['rootfs'], 'image config rootfs');
  const ids = rootfs['diff_ids'];
  if (!Array.isArray(ids) || !ids.every((d): d is string => typeof d === 'string' && digestPattern.test(d))) {
    throw invalidArgument('image config: rootfs.diff_ids must be sha256 digests');
  }
  return {
    diffIds: ids,
    platform: {
      os: typeof o['os'] === 'string' ? o['os'] : '',
      architecture: typeof o['architecture'] === 'string' ? o['architecture'] : '',
      variant: typeof o['variant'] === 'string' ? o['variant'] : undefined,
    },
  };
}
