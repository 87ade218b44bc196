import {
  WriteContentRequest,
  WriteContentRequest_LabelsEntry,
} from '@berth/proto/containerd/services/content/v1/content';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';

/**
 * Decodes a WriteContentRequest with `data` as a view of the received message rather than a copy. The
 * generated decoder copies every bytes field (`Buffer.from(reader.bytes())`): for a pull's 1 MiB chunks that
 * is one more large buffer per chunk (500 MiB copied for a 500 MiB layer). The message buffer is grpc-js's
 * own, not reused after the call is handed the message, so the view stays valid. The same bytes decode, to the
 * same message, as with the generated decoder, and the same bytes fail (write-codec.test.ts).
 */
export function decodeWriteRequest(bytes: Buffer): WriteContentRequest {
  const reader = new BinaryReader(bytes);
  const message = WriteContentRequest.fromPartial({});
  // Tag by tag as the generated decoder reads (a zero tag or an end-group ends the message, a known field
  // with another wire type is skipped), so that exactly the same bytes decode, to the same message.
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    switch (tag) {
      case (1 << 3) | WireType.Varint:
        message.action = reader.int32();
        continue;
      case (2 << 3) | WireType.LengthDelimited:
        message.ref = reader.string();
        continue;
      case (3 << 3) | WireType.Varint:
        message.total = safeNumber(reader.int64());
        continue;
      case (4 << 3) | WireType.LengthDelimited:
        message.expected = reader.string();
        continue;
      case (5 << 3) | WireType.Varint:
        message.offset = safeNumber(reader.int64());
        continue;
      case (6 << 3) | WireType.LengthDelimited: {
        const data = reader.bytes();
        message.data = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        continue;
      }
      case (7 << 3) | WireType.LengthDelimited: {
        const entry = WriteContentRequest_LabelsEntry.decode(reader, reader.uint32());
        message.labels[entry.key] = entry.value;
        continue;
      }
    }
    if ((tag & 7) === WireType.EndGroup || tag === 0) break;
    reader.skip(tag & 7);
  }
  return message;
}

function safeNumber(v: bigint | string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`int64 ${v} is not a safe integer`);
  return n;
}
