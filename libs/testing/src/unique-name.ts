/**
 * Random names for per-test databases, buckets, streams.
 */
import { randomBytes } from 'node:crypto';

/**
 * `<prefix><12 lowercase hex chars>`: valid as a Postgres identifier (when prefix is), an S3 bucket
 * name (prefix of lowercase letters, digits, '-'), and a NATS stream name.
 */
export function uniqueName(prefix: string): string {
  return prefix + randomBytes(6).toString('hex');
}
