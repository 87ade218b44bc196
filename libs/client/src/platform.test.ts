import { describe, expect, it } from 'vitest';
import { formatPlatform, normalizePlatform, parsePlatform, platformRank } from './platform.js';

describe('platforms', () => {
  it('normalizes architecture names and default variants', () => {
    expect(normalizePlatform({ os: 'linux', architecture: 'x86_64' })).toEqual({
      os: 'linux',
      architecture: 'amd64',
      variant: undefined,
    });
    expect(normalizePlatform({ os: 'linux', architecture: 'aarch64' })).toEqual({
      os: 'linux',
      architecture: 'arm64',
      variant: 'v8',
    });
    expect(formatPlatform(parsePlatform('linux/arm'))).toBe('linux/arm/v7');
    expect(formatPlatform(parsePlatform('arm64'))).toBe('linux/arm64/v8');
    expect(() => parsePlatform('linux/arm/v7/x')).toThrow(/os\/arch/);
  });

  it('ranks exact matches first and older arm variants as fallbacks; other architectures never match', () => {
    expect(platformRank({ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'amd64' })).toBe(0);
    expect(
      platformRank({ os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
    ).toBe(0);
    expect(
      platformRank(
        { os: 'linux', architecture: 'arm', variant: 'v7' },
        { os: 'linux', architecture: 'arm', variant: 'v6' },
      ),
    ).toBe(1);
    expect(
      platformRank(
        { os: 'linux', architecture: 'arm', variant: 'v6' },
        { os: 'linux', architecture: 'arm', variant: 'v7' },
      ),
    ).toBeUndefined();
    expect(
      platformRank({ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }),
    ).toBeUndefined();
    expect(
      platformRank({ os: 'linux', architecture: 'amd64' }, { os: 'windows', architecture: 'amd64' }),
    ).toBeUndefined();
  });
});
