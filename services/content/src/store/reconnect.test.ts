import { describe, expect, it } from 'vitest';
import { again } from './reconnect.js';

const failing = (codes: readonly string[]) => {
  let calls = 0;
  return {
    calls: () => calls,
    request: async (): Promise<string> => {
      const code = codes[calls++];
      if (code) throw Object.assign(new Error(`write ${code}`), { code });
      return 'ok';
    },
  };
};

describe('again', () => {
  it('sends a request once more when its pooled connection was closed under it', async () => {
    for (const code of ['EPIPE', 'ECONNRESET']) {
      const r = failing([code]);
      expect(await again(r.request)).toBe('ok');
      expect(r.calls()).toBe(2);
    }
  });

  it('gives up after the second attempt, and never repeats other failures', async () => {
    const twice = failing(['EPIPE', 'EPIPE']);
    await expect(again(twice.request)).rejects.toMatchObject({ code: 'EPIPE' });
    expect(twice.calls()).toBe(2);
    const missing = failing(['NoSuchKey']);
    await expect(again(missing.request)).rejects.toMatchObject({ code: 'NoSuchKey' });
    expect(missing.calls()).toBe(1);
  });
});
