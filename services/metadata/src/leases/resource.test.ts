import { describe, expect, it } from 'vitest';
import { randomLeaseId } from './id.js';
import { formatLeaseResource, parseLeaseResource } from './resource.js';

const dgst = `sha256:${'c'.repeat(64)}`;

describe('parseLeaseResource (containerd parseLeaseResource)', () => {
  it('accepts content digests, ingest refs and snapshots of one snapshotter, and formats them back', () => {
    for (const r of [
      { id: dgst, type: 'content' },
      { id: 'layer-sha256:1', type: 'ingests' },
      { id: 'extract-1 sha256:2', type: 'snapshots/overlayfs' },
    ]) {
      expect(formatLeaseResource(parseLeaseResource(r))).toEqual(r);
    }
    expect(parseLeaseResource({ id: 'k', type: 'snapshots/native' })).toEqual({
      kind: 'snapshots',
      snapshotter: 'native',
      id: 'k',
    });
  });

  it('refuses malformed types and digests with containerd codes', () => {
    const code = (type: string, id: string): string => {
      try {
        parseLeaseResource({ id, type });
      } catch (e) {
        return (e as { code: string }).code;
      }
      return 'ok';
    };
    expect(code('content', 'sha256:x')).toBe('invalid_argument');
    expect(code('content/a', dgst)).toBe('invalid_argument');
    expect(code('ingests/a', 'r')).toBe('invalid_argument');
    expect(code('snapshots', 'k')).toBe('invalid_argument');
    expect(code('snapshots/a/b', 'k')).toBe('invalid_argument');
    expect(code('', 'k')).toBe('not_implemented');
    expect(code('images', 'k')).toBe('not_implemented');
  });
});

describe('randomLeaseId', () => {
  it('has containerd format <nanoseconds>-<4 base64url chars> and differs each time', () => {
    const ids = new Set(Array.from({ length: 50 }, () => randomLeaseId()));
    for (const id of ids) {
      expect(id).toMatch(/^\d{1,9}-[A-Za-z0-9_-]{4}$/);
      expect(Number(id.split('-')[0])).toBeLessThan(1_000_000_000);
    }
    expect(ids.size).toBeGreaterThan(45);
  });
});
