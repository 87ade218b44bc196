import {
  hostPlatform,
  parseConfig,
  parseIndex,
  parseManifest,
  parsePlatform,
  refKey,
  selectManifest,
} from '@berth/client';
import { ErrorCode, ServiceError } from '@berth/common/errors';
import { MediaType } from '@berth/common/oci';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { int, mutate, pick, report, rng, runsFor, seedFor } from './src/mutate.js';

const d = (c: string): string => `sha256:${c.repeat(64)}`;
const index = {
  schemaVersion: 2,
  mediaType: MediaType.ociIndex,
  manifests: [
    { mediaType: MediaType.ociManifest, digest: d('a'), size: 500, platform: { os: 'linux', architecture: 'amd64' } },
    {
      mediaType: MediaType.dockerManifest,
      digest: d('b'),
      size: 501,
      platform: { os: 'linux', architecture: 'arm', variant: 'v7' },
      annotations: { 'org.opencontainers.image.ref.name': 'x' },
    },
  ],
};
const manifest = {
  schemaVersion: 2,
  mediaType: MediaType.ociManifest,
  config: { mediaType: MediaType.ociConfig, digest: d('c'), size: 100 },
  layers: [
    { mediaType: MediaType.ociLayerGzip, digest: d('d'), size: 1000 },
    { mediaType: MediaType.ociLayerZstd, digest: d('e'), size: 2000, annotations: { a: 'b' } },
  ],
};
const config = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [d('f'), d('0')] } };
const seeds = [index, manifest, config].map((o) => Buffer.from(JSON.stringify(o, null, 1)));
const host = hostPlatform();
const armV7 = parsePlatform('linux/arm/v7');
const mediaTypes = [MediaType.ociIndex, MediaType.dockerManifestList, MediaType.ociManifest, MediaType.dockerManifest];

/** Parses `data` every way the pull client does; a failure must be invalid_argument (or not_found for no platform match). */
function parseAll(data: Buffer, mediaType: string): number {
  let ok = 0;
  const attempt = (fn: () => void): void => {
    try {
      fn();
      ok++;
    } catch (e) {
      if (!(e instanceof ServiceError)) throw e;
      expect([ErrorCode.InvalidArgument, ErrorCode.NotFound]).toContain(e.code);
    }
  };
  attempt(() => {
    const descs = parseIndex(data, mediaType);
    for (const x of descs) expect(refKey(x)).toContain(x.digest);
    selectManifest(descs, host);
    selectManifest(descs, armV7);
  });
  attempt(() => {
    const m = parseManifest(data, mediaType);
    expect(m.config.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    for (const l of m.layers) expect(Number.isSafeInteger(l.size) && l.size >= 0).toBe(true);
  });
  attempt(() => {
    const c = parseConfig(data);
    for (const id of c.diffIds) expect(id).toMatch(/^sha256:[a-f0-9]{64}$/);
  });
  return ok;
}

describe('fuzz: manifest, index and config parsing of the pull client', () => {
  it('mutated documents parse or fail with invalid_argument', () => {
    const runs = runsFor('manifest', 10_000);
    const r = rng(seedFor());
    const counts = { inputs: 0, parses: 0 };
    for (let i = 0; i < runs; i++) {
      const data = mutate(r, pick(r, seeds), seeds, 1 + int(r, 4));
      counts.inputs++;
      counts.parses += parseAll(data, pick(r, mediaTypes));
    }
    report('manifest', counts);
    expect(counts.parses).toBeGreaterThan(0);
  });

  it('structurally random JSON (fast-check) parses or fails with invalid_argument', () => {
    const runs = runsFor('manifest_json', 5_000);
    const counts = { inputs: 0, parses: 0 };
    const descriptor = fc.record(
      {
        mediaType: fc.oneof(fc.constantFrom(...mediaTypes, MediaType.ociConfig, ''), fc.string()),
        digest: fc.oneof(fc.constantFrom(d('a'), 'sha256:', 'md5:x', d('A')), fc.string()),
        size: fc.oneof(fc.integer(), fc.double(), fc.constant(Number.MAX_SAFE_INTEGER + 2), fc.string()),
        platform: fc.oneof(
          fc.record({ os: fc.string(), architecture: fc.string(), variant: fc.string() }),
          fc.jsonValue(),
        ),
        annotations: fc.oneof(fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.jsonValue())), fc.jsonValue()),
      },
      { requiredKeys: [] },
    );
    const doc = fc.record(
      {
        schemaVersion: fc.oneof(fc.constant(2), fc.jsonValue()),
        mediaType: fc.oneof(fc.constantFrom(...mediaTypes), fc.string()),
        manifests: fc.oneof(fc.array(descriptor, { maxLength: 4 }), fc.jsonValue()),
        config: fc.oneof(descriptor, fc.jsonValue()),
        layers: fc.oneof(fc.array(descriptor, { maxLength: 4 }), fc.jsonValue()),
        rootfs: fc.oneof(
          fc.record({ diff_ids: fc.array(fc.oneof(fc.constant(d('9')), fc.string()), { maxLength: 3 }) }),
          fc.jsonValue(),
        ),
        os: fc.jsonValue(),
        architecture: fc.jsonValue(),
        __proto__: fc.jsonValue(),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(doc, fc.jsonValue()), fc.constantFrom(...mediaTypes), (v, mt) => {
        counts.inputs++;
        counts.parses += parseAll(Buffer.from(JSON.stringify(v) ?? 'null'), mt);
      }),
      { numRuns: runs, seed: seedFor() },
    );
    report('manifest_json', counts);
  });
});
