/**
 * `source` in pieces of at least `min` bytes (but the last), joining small chunks and passing large ones on
 * uncopied: an HTTP body (an S3 object) arrives in 16–64 KiB chunks, and every later stage (a gRPC message, a
 * digest thread's wake-up, a decompressor's turn on the thread pool) costs per piece, not per byte.
 */
export async function* coalesce(source: AsyncIterable<Buffer>, min: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let held = 0;
  for await (const b of source) {
    if (held === 0 && b.length >= min) {
      yield b;
      continue;
    }
    parts.push(b);
    held += b.length;
    if (held >= min) {
      yield parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, held);
      parts = [];
      held = 0;
    }
  }
  if (held > 0) yield parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, held);
}
