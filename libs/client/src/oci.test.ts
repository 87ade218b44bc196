import { chainIds, MediaType, sha256 } from '@berth/common/oci';
import { describe, expect, it } from 'vitest';
import { parseIndex, parseManifest, refKey, verify } from './oci.js';
import { selectManifest } from './pull.js';

const d = (c: string): string => `sha256:${c.repeat(64)}`;

describe('OCI documents', () => {
  it('computes chain IDs as the image spec defines them', () => {
    expect(chainIds([d('a')])).toEqual([d('a')]);
    expect(chainIds([d('a'), d('b')])).toEqual([d('a'), sha256(`${d('a')} ${d('b')}`)]);
  });

  it('names ingests as containerd does, per kind of blob', () => {
    expect(refKey({ mediaType: MediaType.dockerManifestList, digest: d('1'), size: 1 })).toBe(`index-${d('1')}`);
    expect(refKey({ mediaType: MediaType.ociManifest, digest: d('1'), size: 1 })).toBe(`manifest-${d('1')}`);
    expect(refKey({ mediaType: MediaType.dockerConfig, digest: d('1'), size: 1 })).toBe(`config-${d('1')}`);
    expect(refKey({ mediaType: MediaType.ociLayerZstd, digest: d('1'), size: 1 })).toBe(`layer-${d('1')}`);
    expect(refKey({ mediaType: 'application/x-other', digest: d('1'), size: 1 })).toBe(`unknown-${d('1')}`);
  });

  it('verifies size and digest', () => {
    const data = Buffer.from('hello');
    expect(() => verify({ mediaType: 'x', digest: sha256(data), size: 5 }, data)).not.toThrow();
    expect(() => verify({ mediaType: 'x', digest: sha256(data), size: 6 }, data)).toThrow(/6/);
    expect(() => verify({ mediaType: 'x', digest: d('0'), size: 5 }, data)).toThrow(/digest/);
  });

  it('rejects manifests that are not schema 2 or lie about their media type', () => {
    const m = (o: unknown): Buffer => Buffer.from(JSON.stringify(o));
    expect(() => parseManifest(m({ schemaVersion: 1 }), MediaType.ociManifest)).toThrow(/schemaVersion/);
    expect(() =>
      parseManifest(m({ schemaVersion: 2, mediaType: MediaType.dockerManifest, layers: [] }), MediaType.ociManifest),
    ).toThrow(/differs/);
    expect(() =>
      parseManifest(
        m({ schemaVersion: 2, config: { mediaType: 'c', digest: 'md5:x', size: 1 }, layers: [] }),
        MediaType.ociManifest,
      ),
    ).toThrow(/digest/);
  });

  it('picks the host platform from an index, not the first entry; not_found when nothing fits', () => {
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: MediaType.ociManifest,
            digest: d('1'),
            size: 1,
            platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
          },
          {
            mediaType: MediaType.ociManifest,
            digest: d('2'),
            size: 1,
            platform: { os: 'linux', architecture: 'arm', variant: 'v6' },
          },
          {
            mediaType: MediaType.ociManifest,
            digest: d('3'),
            size: 1,
            platform: { os: 'linux', architecture: 'arm', variant: 'v7' },
          },
          {
            mediaType: MediaType.ociManifest,
            digest: d('4'),
            size: 1,
            platform: { os: 'linux', architecture: 'amd64' },
          },
        ],
      }),
    );
    const ms = parseIndex(index, MediaType.ociIndex);
    expect(selectManifest(ms, { os: 'linux', architecture: 'amd64' }).digest).toBe(d('4'));
    expect(selectManifest(ms, { os: 'linux', architecture: 'arm', variant: 'v7' }).digest).toBe(d('3'));
    expect(selectManifest(ms, { os: 'linux', architecture: 'arm', variant: 'v8' }).digest).toBe(d('3'));
    expect(() => selectManifest(ms, { os: 'linux', architecture: 's390x' })).toThrow(
      'no match for platform linux/s390x in manifest: not found',
    );
  });
});

describe('OCI documents: hostile values (found by fuzz/manifest.fuzz.test.ts)', () => {
  it('a schemaVersion or mediaType whose String() throws is still invalid_argument', () => {
    const doc = (o: unknown): Buffer => Buffer.from(JSON.stringify(o));
    const hostile = [{ toString: '' }];
    expect(() => parseManifest(doc({ schemaVersion: hostile }), MediaType.ociManifest)).toThrow(
      /manifest: schemaVersion \[\{"toString":""\}\] is not supported/,
    );
    expect(() => parseManifest(doc({ schemaVersion: 2, mediaType: hostile }), MediaType.ociManifest)).toThrow(
      /manifest: mediaType .* differs/,
    );
    expect(() => parseIndex(doc({ mediaType: hostile, manifests: [] }), MediaType.ociIndex)).toThrow(
      /index: mediaType .* differs/,
    );
  });
});
