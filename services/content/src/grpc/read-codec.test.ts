import { ReadContentResponse } from '@berth/proto/containerd/services/content/v1/content';
import { describe, expect, it } from 'vitest';
import { encodeReadResponse } from './read-codec.js';

describe('encodeReadResponse', () => {
  it('matches the generated encoder byte for byte', () => {
    for (const offset of [0, 1, 127, 128, 300, 2 ** 31, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER]) {
      for (const size of [0, 1, 200, 70_000]) {
        const data = Buffer.alloc(size, 0xab);
        const ours = encodeReadResponse({ offset, data });
        expect(ours.equals(Buffer.from(ReadContentResponse.encode({ offset, data }).finish()))).toBe(true);
        const back = ReadContentResponse.decode(ours);
        expect(back.offset).toBe(offset);
        expect(back.data.equals(data)).toBe(true);
      }
    }
  });
});
