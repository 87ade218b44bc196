import { describe, expect, it } from 'vitest';
import { parseChallenges } from './auth.js';

describe('parseChallenges', () => {
  it('reads a Docker bearer challenge with quoted parameters', () => {
    expect(
      parseChallenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
      ),
    ).toEqual([
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:library/busybox:pull',
        },
      },
    ]);
  });

  it('reads several challenges, unquoted values, escapes and commas inside quotes', () => {
    expect(parseChallenges('Basic realm="a, \\"b\\"", Bearer realm=https://t/x, service=s')).toEqual([
      { scheme: 'basic', params: { realm: 'a, "b"' } },
      { scheme: 'bearer', params: { realm: 'https://t/x', service: 's' } },
    ]);
  });

  it('gives nothing for an empty header', () => {
    expect(parseChallenges('')).toEqual([]);
  });
});
