import { describe, expect, it } from 'vitest';
import { digestProblem } from './digest.js';

describe('digestProblem (go-digest Validate)', () => {
  it('accepts sha256, sha384 and sha512 in lowercase hex of the right length', () => {
    expect(digestProblem(`sha256:${'a'.repeat(64)}`)).toBeUndefined();
    expect(digestProblem(`sha384:${'0'.repeat(96)}`)).toBeUndefined();
    expect(digestProblem(`sha512:${'f'.repeat(128)}`)).toBeUndefined();
  });

  it('words each problem as go-digest does', () => {
    expect(digestProblem('')).toBe('invalid checksum digest format');
    expect(digestProblem('sha256')).toBe('invalid checksum digest format');
    expect(digestProblem(':abc')).toBe('invalid checksum digest format');
    expect(digestProblem('sha256:')).toBe('invalid checksum digest format');
    expect(digestProblem('sha256:abc')).toBe('invalid checksum digest length');
    expect(digestProblem(`sha256:${'A'.repeat(64)}`)).toBe('invalid checksum digest format');
    expect(digestProblem(`sha256:${'g'.repeat(64)}`)).toBe('invalid checksum digest format');
    expect(digestProblem('md5:d41d8cd98f00b204e9800998ecf8427e')).toBe('unsupported digest algorithm');
    expect(digestProblem('Bad Alg:xyz')).toBe('invalid checksum digest format');
  });
});
