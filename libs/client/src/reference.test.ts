import { isInvalidArgument } from '@berth/common/errors';
import { describe, expect, it } from 'vitest';
import { parseReference } from './reference.js';

describe('parseReference', () => {
  it('keeps an explicit registry with a port, and defaults the tag to latest', () => {
    expect(parseReference('127.0.0.1:5000/test/busybox')).toMatchObject({
      domain: '127.0.0.1:5000',
      host: '127.0.0.1:5000',
      repository: 'test/busybox',
      tag: 'latest',
      name: '127.0.0.1:5000/test/busybox:latest',
      object: 'latest',
    });
  });

  it('normalizes Docker Hub names as docker does', () => {
    expect(parseReference('busybox')).toMatchObject({
      domain: 'docker.io',
      host: 'registry-1.docker.io',
      repository: 'library/busybox',
      name: 'docker.io/library/busybox:latest',
    });
    expect(parseReference('bitnami/redis:7')).toMatchObject({
      repository: 'bitnami/redis',
      tag: '7',
      name: 'docker.io/bitnami/redis:7',
    });
    expect(parseReference('index.docker.io/library/alpine:3').name).toBe('docker.io/library/alpine:3');
    expect(parseReference('localhost/app').domain).toBe('localhost');
  });

  it('asks for the digest when one is given, keeping the tag in the name', () => {
    const d = `sha256:${'a'.repeat(64)}`;
    expect(parseReference(`r.example.com/x/y:v1@${d}`)).toMatchObject({
      tag: 'v1',
      digest: d,
      object: d,
      name: `r.example.com/x/y:v1@${d}`,
    });
    expect(parseReference(`r.example.com/x/y@${d}`)).toMatchObject({ tag: undefined, object: d });
  });

  it('rejects what a registry would reject, as invalid_argument', () => {
    for (const bad of ['', 'UPPER/case', 'r.io/a//b', 'r.io/x:bad tag', 'r.io/x@sha256', 'r.io/-x']) {
      let err: unknown;
      try {
        parseReference(bad);
      } catch (e) {
        err = e;
      }
      expect(isInvalidArgument(err), bad).toBe(true);
    }
  });
});
