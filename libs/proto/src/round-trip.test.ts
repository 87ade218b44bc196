// Byte-level round trip between ts-proto's generated codecs and containerd's reference protos
// (through Debian protoc --encode/--decode). Covers a map<string,string>, map<string,Any>, int64
// values above 2^32, bytes, enums, Any and Timestamps (including Go's zero time, which the ctr
// client sends in created_at/updated_at).
import { beforeAll, describe, expect, it } from 'vitest';
import { Container, CreateContainerRequest } from './gen/containerd/services/containers/v1/containers.js';
import {
  ReadContentRequest,
  WriteAction,
  WriteContentRequest,
  WriteContentResponse,
} from './gen/containerd/services/content/v1/content.js';
import { CreateNamespaceRequest } from './gen/containerd/services/namespaces/v1/namespace.js';
import { missingReference, protocDecode, protocEncode, REF, SKIP } from './test-support/reference.js';

const GO_ZERO_TIME = new Date(-62135596800 * 1000); // 0001-01-01T00:00:00Z

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

describe.skipIf(SKIP)('ts-proto <-> containerd protoc byte equality', () => {
  beforeAll(() => {
    const missing = missingReference();
    if (missing)
      throw new Error(`${missing}. Install it, or set BERTH_SKIP_WIRE_COMPAT=1 to skip this check on purpose.`);
  });

  it('CreateNamespaceRequest (map<string,string>)', () => {
    const ts = CreateNamespaceRequest.encode({
      namespace: { name: 'testns', labels: { 'containerd.io/defaults/snapshotter': 'overlayfs' } },
    }).finish();
    const ref = protocEncode(
      'containerd.services.namespaces.v1.CreateNamespaceRequest',
      REF.namespaces,
      'namespace { name: "testns" labels { key: "containerd.io/defaults/snapshotter" value: "overlayfs" } }',
    );
    expect(hex(ts)).toBe(hex(ref));
    expect(CreateNamespaceRequest.decode(ref)).toEqual({
      namespace: { name: 'testns', labels: { 'containerd.io/defaults/snapshotter': 'overlayfs' } },
    });
    expect(protocDecode('containerd.services.namespaces.v1.CreateNamespaceRequest', REF.namespaces, ts)).toContain(
      'value: "overlayfs"',
    );
  });

  it('WriteContentRequest (enum, int64 > 2^32, bytes, map)', () => {
    const msg = WriteContentRequest.fromPartial({
      action: WriteAction.WRITE,
      ref: 'layer-sha256:0123abcd',
      total: 5_000_000_000,
      expected: 'sha256:0123abcd',
      offset: 4_294_967_303,
      data: Buffer.from([0, 1, 2, 0xff, 0x68, 0x69]),
      labels: { 'containerd.io/uncompressed': 'sha256:beef' },
    });
    const ts = WriteContentRequest.encode(msg).finish();
    const ref = protocEncode(
      'containerd.services.content.v1.WriteContentRequest',
      REF.content,
      `action: WRITE ref: "layer-sha256:0123abcd" total: 5000000000 expected: "sha256:0123abcd" offset: 4294967303
       data: "\\000\\001\\002\\377hi" labels { key: "containerd.io/uncompressed" value: "sha256:beef" }`,
    );
    expect(hex(ts)).toBe(hex(ref));
    expect(WriteContentRequest.decode(ref)).toEqual(msg);
  });

  it('WriteContentResponse (Timestamps incl. Go zero time, negative int64 seconds)', () => {
    const msg = WriteContentResponse.fromPartial({
      action: WriteAction.COMMIT,
      startedAt: GO_ZERO_TIME,
      updatedAt: new Date('2024-05-06T07:08:09.123Z'),
      offset: 1_028_097,
      total: 1_028_097,
      digest: 'sha256:aa',
    });
    const ts = WriteContentResponse.encode(msg).finish();
    const ref = protocEncode(
      'containerd.services.content.v1.WriteContentResponse',
      REF.content,
      `action: COMMIT started_at { seconds: -62135596800 } updated_at { seconds: 1714979289 nanos: 123000000 }
       offset: 1028097 total: 1028097 digest: "sha256:aa"`,
    );
    expect(hex(ts)).toBe(hex(ref));
    expect(WriteContentResponse.decode(ref)).toEqual(msg);
    expect(WriteContentResponse.decode(ref).startedAt?.toISOString()).toBe('0001-01-01T00:00:00.000Z');
  });

  it('CreateContainerRequest (Any, nested message, map<string,Any>, Timestamp)', () => {
    const spec = Buffer.from('{"ociVersion":"1.0.2"}');
    const msg = CreateContainerRequest.fromPartial({
      container: Container.fromPartial({
        id: 'c1',
        labels: { 'io.containerd.image.config.stop-signal': 'SIGTERM' },
        image: 'docker.io/library/busybox:latest',
        runtime: {
          name: 'io.containerd.runc.v2',
          options: { typeUrl: 'containerd.runc.v1.Options', value: Buffer.alloc(0) },
        },
        spec: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Spec', value: spec },
        snapshotter: 'overlayfs',
        snapshotKey: 'c1',
        createdAt: GO_ZERO_TIME,
        extensions: { ext: { typeUrl: 'x/y', value: Buffer.from([7]) } },
      }),
    });
    const ts = CreateContainerRequest.encode(msg).finish();
    const ref = protocEncode(
      'containerd.services.containers.v1.CreateContainerRequest',
      REF.containers,
      `container {
         id: "c1"
         labels { key: "io.containerd.image.config.stop-signal" value: "SIGTERM" }
         image: "docker.io/library/busybox:latest"
         runtime { name: "io.containerd.runc.v2" options { type_url: "containerd.runc.v1.Options" } }
         spec { type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec" value: "{\\"ociVersion\\":\\"1.0.2\\"}" }
         snapshotter: "overlayfs"
         snapshot_key: "c1"
         created_at { seconds: -62135596800 }
         extensions { key: "ext" value { type_url: "x/y" value: "\\007" } }
       }`,
    );
    expect(hex(ts)).toBe(hex(ref));
    expect(CreateContainerRequest.decode(ref)).toEqual(msg);
  });

  it('forceLong=number: decoding an int64 beyond Number.MAX_SAFE_INTEGER throws instead of truncating', () => {
    const ok = protocEncode(
      'containerd.services.content.v1.ReadContentRequest',
      REF.content,
      'digest: "sha256:aa" size: 9007199254740991',
    );
    expect(ReadContentRequest.decode(ok).size).toBe(Number.MAX_SAFE_INTEGER);
    const tooBig = protocEncode(
      'containerd.services.content.v1.ReadContentRequest',
      REF.content,
      'digest: "sha256:aa" size: 9007199254740993',
    );
    expect(() => ReadContentRequest.decode(tooBig)).toThrow(/MAX_SAFE_INTEGER/);
    const tooSmall = protocEncode(
      'containerd.services.content.v1.ReadContentRequest',
      REF.content,
      'offset: -9007199254740993',
    );
    expect(() => ReadContentRequest.decode(tooSmall)).toThrow(/MIN_SAFE_INTEGER/);
  });
});
