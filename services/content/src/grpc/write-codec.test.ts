import { WriteAction, WriteContentRequest } from '@berth/proto/containerd/services/content/v1/content';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import { decodeWriteRequest } from './write-codec.js';

describe('decodeWriteRequest', () => {
  const samples: WriteContentRequest[] = [
    WriteContentRequest.fromPartial({}),
    WriteContentRequest.fromPartial({ action: WriteAction.STAT, ref: 'pull-1' }),
    WriteContentRequest.fromPartial({
      action: WriteAction.COMMIT,
      ref: 'layer-sha256:ab',
      total: 2 ** 40 + 3,
      expected: `sha256:${'a'.repeat(64)}`,
      offset: 1_048_576,
      data: Buffer.alloc(70_000, 0x5a),
      labels: { 'containerd.io/gc.ref.content.l.0': 'sha256:x', empty: '' },
    }),
  ];

  it('gives what the generated decoder gives', () => {
    for (const m of samples) {
      const wire = Buffer.from(WriteContentRequest.encode(m).finish());
      expect(decodeWriteRequest(wire)).toEqual(WriteContentRequest.decode(wire));
    }
  });

  it('keeps data as a view of the message (no copy) and skips fields it does not know, as the generated one does', () => {
    const m = samples[2] as WriteContentRequest;
    const w = WriteContentRequest.encode(m);
    w.uint32((99 << 3) | 1).fixed64(7n); // an unknown fixed64 field
    w.uint32((98 << 3) | 2).bytes(Buffer.from('later version'));
    w.uint32((1 << 3) | 2).bytes(Buffer.from('wrong wire type for action')); // skipped, as generated
    const wire = Buffer.from(w.finish());
    const ours = decodeWriteRequest(wire);
    expect(ours).toEqual(WriteContentRequest.decode(wire));
    expect(ours.data.buffer).toBe(wire.buffer);
    wire[wire.indexOf(0x5a)] = 0x00;
    expect(ours.data[0]).toBe(0x00);
  });

  it('refuses an int64 beyond the safe integers, as the generated decoder does', () => {
    const wire = Buffer.from(
      new BinaryWriter()
        .uint32(3 << 3)
        .int64(2n ** 60n)
        .finish(),
    );
    expect(() => WriteContentRequest.decode(wire)).toThrow();
    expect(() => decodeWriteRequest(wire)).toThrow(/safe integer/);
  });
});
