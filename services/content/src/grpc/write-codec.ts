import {
  WriteContentRequest,
  WriteContentRequest_LabelsEntry,
} from '@berth/proto/containerd/services/content/v1/content';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';

/**
 * Decodes a WriteContentRequest with `data` as a view of the received message rather than a copy. The
 * generated decoder copies every bytes field (`Buffer.from(reader.bytes())`): for a pull's 1 MiB chunks that
 * is one more large buffer per chunk, and V8 counts each against its external memory, whose growth sets off
 * collections (a 500 MiB layer: ~80 full collections per pull). The message buffer is grpc-js's own, not
 * reused after the call is handed the message, so the view stays valid. Field for field the generated
 * decoder's result (write-codec.test.ts).
 */
export function decodeWriteRequest(bytes: Buffer): WriteContentRequest {
  const reader = new BinaryReader(bytes);
  const message = WriteContentRequest.fromPartial({});
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    switch (wireType === WireType.Varint || wireType === WireType.LengthDelimited ? field : 0) {
      case 1:
        if (wireType !== WireType.Varint) break;
        message.action = reader.int32();
        continue;
      case 2:
        if (wireType !== WireType.LengthDelimited) break;
        message.ref = reader.string();
        continue;
      case 3:
        if (wireType !== WireType.Varint) break;
        message.total = safeNumber(reader.int64());
        continue;
      case 4:
        if (wireType !== WireType.LengthDelimited) break;
        message.expected = reader.string();
        continue;
      case 5:
        if (wireType !== WireType.Varint) break;
        message.offset = safeNumber(reader.int64());
        continue;
      case 6: {
        if (wireType !== WireType.LengthDelimited) break;
        const data = reader.bytes();
        message.data = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        continue;
      }
      case 7: {
        if (wireType !== WireType.LengthDelimited) break;
        const entry = WriteContentRequest_LabelsEntry.decode(reader, reader.uint32());
        message.labels[entry.key] = entry.value;
        continue;
      }
    }
    if (wireType === WireType.EndGroup) break;
    reader.skip(wireType, field);
  }
  return message;
}

function safeNumber(v: bigint | string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`int64 ${v} is not a safe integer`);
  return n;
}
