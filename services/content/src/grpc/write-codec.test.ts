import { WriteAction, WriteContentRequest } from '@berth/proto/containerd/services/content/v1/content';
import { mulberry32 } from '@berth/testing/prng';
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

  it('decodes and refuses exactly what the generated decoder does, on 20,000 mutated messages', () => {
    const random = mulberry32(0x5eed);
    const int = (n: number): number => Math.floor(random() * n);
    const seeds = samples.map((m) => Buffer.from(WriteContentRequest.encode(m).finish()));
    // A decoded message as JSON with its data set aside, compared with Buffer.equals: JSON.stringify spells a
    // Buffer out as an array of numbers (its toJSON runs even under a replacer), which made this test take 40 s
    // on a 2-core machine (a third of the mutants carry 70 kB of data).
    interface Outcome {
      readonly json: string;
      readonly data?: Uint8Array;
    }
    const outcome = (decode: () => WriteContentRequest): Outcome => {
      try {
        const { data, ...rest } = decode();
        return { json: JSON.stringify(rest), data };
      } catch {
        return { json: 'throws' };
      }
    };
    const same = (a: Outcome, b: Outcome): boolean =>
      a.json === b.json && (a.data && b.data ? Buffer.compare(a.data, b.data) === 0 : a.data === b.data);
    const spelled = (o: Outcome): string => `${o.json} ${o.data ? Buffer.from(o.data).toString('hex') : '-'}`;
    let refused = 0;
    for (let i = 0; i < 20_000; i++) {
      const b = Buffer.from(seeds[int(seeds.length)] as Buffer);
      for (let k = 1 + int(4); k > 0; k--) {
        if (b.length === 0) break;
        const at = int(b.length);
        const r = random();
        if (r < 0.5) b[at] = int(256);
        else if (r < 0.7)
          b[at] = 0; // zero tags end a message for the generated decoder
        else b[at] = (int(16) << 3) | int(8); // any field, any wire type
      }
      const cut = random() < 0.2 ? b.subarray(0, int(b.length + 1)) : b;
      const generated = outcome(() => WriteContentRequest.decode(cut));
      const ours = outcome(() => decodeWriteRequest(Buffer.from(cut)));
      // Spelled out (and the mutant in hex) only when they differ: doing it for each of 20,000 costs seconds.
      if (!same(ours, generated)) expect(spelled(ours), `bytes ${cut.toString('hex')}`).toBe(spelled(generated));
      if (generated.json === 'throws') refused++;
    }
    // Both outcomes occur: the mutants reach the decoders' error paths and their field paths.
    expect(refused).toBeGreaterThan(1000);
    expect(refused).toBeLessThan(19_000);
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
