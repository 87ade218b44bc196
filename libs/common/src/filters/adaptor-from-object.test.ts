import { describe, expect, it } from 'vitest';
import { adaptorFromObject, alwaysPresent } from './adaptor-from-object.js';
import { parseFilters } from './parser.js';

describe('adaptorFromObject', () => {
  const image = adaptorFromObject({
    name: 'docker.io/library/busybox:latest',
    'target.digest': 'sha256:abc',
    'target.mediatype': '',
    labels: { 'containerd.io/gc.root': 'true', 'a.b': 'dotted', plain: 'p' },
    annotations: {},
  });

  it('reads scalars, and treats empty strings as absent', () => {
    expect(image.field(['name'])).toBe('docker.io/library/busybox:latest');
    expect(image.field(['target', 'digest'])).toBe('sha256:abc');
    expect(image.field(['target', 'mediatype'])).toBeUndefined();
    expect(image.field(['target'])).toBeUndefined();
    expect(image.field(['nope'])).toBeUndefined();
    expect(image.field([])).toBeUndefined();
  });

  it('matches nested names part by part, not by a quoted dotted part', () => {
    expect(image.field(['target.digest'])).toBeUndefined();
  });

  it('answers longer paths with the scalar, as containerd adaptors do', () => {
    expect(image.field(['name', 'whatever'])).toBe('docker.io/library/busybox:latest');
  });

  it('looks maps up by the rest of the path joined with dots', () => {
    expect(image.field(['labels', 'containerd.io/gc.root'])).toBe('true');
    expect(image.field(['labels', 'a.b'])).toBe('dotted');
    expect(image.field(['labels', 'a', 'b'])).toBe('dotted');
    expect(image.field(['labels', 'plain'])).toBe('p');
    expect(image.field(['labels'])).toBeUndefined();
    expect(image.field(['annotations', 'x'])).toBeUndefined();
  });

  it('does not see inherited object properties as labels', () => {
    expect(image.field(['labels', 'constructor'])).toBeUndefined();
    expect(image.field(['labels', '__proto__'])).toBeUndefined();
    expect(image.field(['labels', 'toString'])).toBeUndefined();
    expect(
      adaptorFromObject({ labels: Object.create(null) as Record<string, string> }).field(['labels', 'x']),
    ).toBeUndefined();
  });

  it('accepts Map labels, and empty label values are present', () => {
    const a = adaptorFromObject({
      labels: new Map([
        ['k', ''],
        ['x.y', '1'],
      ]),
    });
    expect(a.field(['labels', 'k'])).toBe('');
    expect(a.field(['labels', 'x', 'y'])).toBe('1');
    expect(a.field(['labels', 'z'])).toBeUndefined();
  });

  it('marks always-present scalars', () => {
    const snap = adaptorFromObject({ name: alwaysPresent('k'), parent: alwaysPresent(''), kind: 'committed' });
    expect(snap.field(['parent'])).toBe('');
    expect(parseFilters(['parent==""']).match(snap)).toBe(true);
    expect(parseFilters(['parent']).match(snap)).toBe(true);
    expect(parseFilters(['kind==committed,name==k']).match(snap)).toBe(true);
  });

  it('delegates to nested adaptors with the rest of the path', () => {
    const payload = adaptorFromObject({ id: 'c1', 'runtime.name': 'io.containerd.runc.v2' });
    const envelope = adaptorFromObject({ topic: '/containers/create', namespace: 'default', event: payload });
    expect(envelope.field(['event', 'id'])).toBe('c1');
    expect(envelope.field(['event', 'runtime', 'name'])).toBe('io.containerd.runc.v2');
    expect(parseFilters(['topic~=^/containers/,event.id==c1']).match(envelope)).toBe(true);
    expect(parseFilters(['namespace==other', 'event.runtime.name~=runc']).match(envelope)).toBe(true);
  });

  it('prefers the longest matching name', () => {
    const a = adaptorFromObject({ target: { digest: 'from-map' }, 'target.digest': 'scalar' });
    expect(a.field(['target', 'digest'])).toBe('scalar');
    expect(a.field(['target', 'other'])).toBeUndefined();
  });

  it('treats null and undefined as absent', () => {
    const a = adaptorFromObject({ a: null, b: undefined, labels: undefined });
    expect(a.field(['a'])).toBeUndefined();
    expect(a.field(['b'])).toBeUndefined();
    expect(a.field(['labels', 'x'])).toBeUndefined();
  });
});
