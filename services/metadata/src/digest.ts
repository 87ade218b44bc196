/**
 * go-digest's `Digest.Validate` (opencontainers/go-digest): `<algorithm>:<encoded>` with a supported
 * algorithm and lowercase hex of the algorithm's length. Returns go-digest's reason, or undefined when valid.
 */
const hexLength: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };
const anyDigest = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export function digestProblem(d: string): string | undefined {
  const i = d.indexOf(':');
  if (i <= 0 || i + 1 === d.length) return 'invalid checksum digest format';
  const algorithm = d.slice(0, i);
  const encoded = d.slice(i + 1);
  const length = hexLength[algorithm];
  if (length === undefined)
    return anyDigest.test(d) ? 'unsupported digest algorithm' : 'invalid checksum digest format';
  if (encoded.length !== length) return 'invalid checksum digest length';
  return /^[a-f0-9]+$/.test(encoded) ? undefined : 'invalid checksum digest format';
}
