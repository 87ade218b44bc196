/**
 * Column values as either driver returns them: postgres.js and PGlite both parse jsonb, but a value written
 * as text may come back as a string; bytea is a Buffer or a Uint8Array; int8 may be a string.
 */
export function jsonColumn<T>(v: T | string): T {
  return typeof v === 'string' ? (JSON.parse(v) as T) : v;
}

export function bytesColumn(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export function numberColumn(v: number | string | bigint): number {
  return typeof v === 'number' ? v : Number(v);
}
