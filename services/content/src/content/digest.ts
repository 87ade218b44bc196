import { ErrorCode, ServiceError } from '@berth/common/errors';
import { digestProblem } from '@berth/common/oci';

/** A validated OCI digest (`<algorithm>:<hex>`), as go-digest's `Digest.Validate` accepts it. */
export type Digest = string & { readonly __digest: unique symbol };

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
