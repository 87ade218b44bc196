import { createHash } from 'node:crypto';

/**
 * go-digest's `Digest.Validate` (opencontainers/go-digest): `<algorithm>:<encoded>` with an algorithm
 * containerd has linked (sha256, sha384, sha512) and lowercase hex of its length.
 */
const hexLength: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };
const anyDigest = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
/** Almost every digest: checked in one test, without slicing it up. */
const sha256Digest = /^sha256:[a-f0-9]{64}$/;

/** go-digest's own error texts, which ctr prints. */
export const DigestError = {
  format: 'invalid checksum digest format',
  length: 'invalid checksum digest length',
  unsupported: 'unsupported digest algorithm',
} as const;

/** The go-digest validation error text for `d`, or undefined when it is a valid digest. */
export function digestProblem(d: string): string | undefined {
  if (sha256Digest.test(d)) return undefined;
  const i = d.indexOf(':');
  if (i <= 0 || i + 1 === d.length) return DigestError.format;
  const algorithm = d.slice(0, i);
  const encoded = d.slice(i + 1);
  const length = hexLength[algorithm];
  if (length === undefined) return anyDigest.test(d) ? DigestError.unsupported : DigestError.format;
  if (encoded.length !== length) return DigestError.length;
  return /^[a-f0-9]+$/.test(encoded) ? undefined : DigestError.format;
}

/** The sha256 digest (`sha256:<hex>`) of `data`. */
export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** chain IDs per the OCI image spec: C0 = D0, Cn = sha256(Cn-1 + " " + Dn). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : sha256(`${prev} ${d}`));
  }
  return out;
}
