import { randomBytes } from 'node:crypto';

/**
 * containerd's `leases.WithRandomID`: the nanoseconds within the current second and 3 random bytes in
 * URL-safe base64, e.g. `413289142-D3nE`.
 */
export function randomLeaseId(): string {
  const nanos = (Date.now() % 1000) * 1_000_000 + Number(process.hrtime.bigint() % 1_000_000n);
  return `${nanos}-${randomBytes(3).toString('base64url')}`;
}
