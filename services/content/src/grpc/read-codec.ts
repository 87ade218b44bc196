import type { ReadContentResponse } from '@berth/proto/containerd/services/content/v1/content';

/**
 * Encodes a ReadContentResponse (offset = 1: int64, data = 2: bytes) into one exactly sized buffer. The
 * generated encoder grows a writer buffer, concatenates and copies again: for 1 MiB payloads that churn of
 * large buffers cost more garbage collection than the read itself. Wire-identical to the generated encoder.
 */
export function encodeReadResponse(value: ReadContentResponse): Buffer {
  const offset = value.offset;
  const data = value.data;
  const offsetLen = offset > 0 ? 1 + varintLength(offset) : 0;
  const dataLen = data.length > 0 ? 1 + varintLength(data.length) + data.length : 0;
  const out = Buffer.allocUnsafe(offsetLen + dataLen);
  let pos = 0;
  if (offsetLen > 0) {
    out[pos++] = 0x08;
    pos = writeVarint(out, pos, offset);
  }
  if (dataLen > 0) {
    out[pos++] = 0x12;
    pos = writeVarint(out, pos, data.length);
    data.copy(out, pos);
  }
  return out;
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}
