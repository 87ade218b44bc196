import { ErrorCode, ServiceError } from '@berth/common/errors';

/** A validated OCI digest (`<algorithm>:<hex>`), as go-digest's `Digest.Validate` accepts it. */
export type Digest = string & { readonly __digest: unique symbol };

/** Hex lengths of the algorithms containerd has available (go-digest with crypto/sha256 and sha512 linked). */
const algorithms: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };
const digestPattern = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** go-digest's own error texts, which ctr prints. */
export const DigestError = {
  format: 'invalid checksum digest format',
  length: 'invalid checksum digest length',
  unsupported: 'unsupported digest algorithm',
} as const;

/** The go-digest validation error text for `s`, or undefined when it is a valid digest. */
export function digestProblem(s: string): string | undefined {
  const i = s.indexOf(':');
  if (i <= 0 || i + 1 === s.length) return DigestError.format;
  const algorithm = s.slice(0, i);
  const encoded = s.slice(i + 1);
  const size = algorithms[algorithm];
  if (size === undefined) return digestPattern.test(s) ? DigestError.unsupported : DigestError.format;
  if (encoded.length !== size) return DigestError.length;
  return /^[a-f0-9]+$/.test(encoded) ? undefined : DigestError.format;
}

/**
 * Validates `s`; when it is not a digest, throws invalid_argument whose whole text is `message(problem)`
 * (containerd's content server words this error differently per RPC, without the errdefs suffix).
 */
export function parseDigest(
  s: string,
  message: (problem: string) => string = () => `${JSON.stringify(s)} failed validation`,
): Digest {
  const problem = digestProblem(s);
  if (problem !== undefined) throw new ServiceError(ErrorCode.InvalidArgument, message(problem));
  return s as Digest;
}

/** The digest of hex-encoded sha256 output. */
export function sha256Digest(hex: string): Digest {
  return `sha256:${hex}` as Digest;
}
