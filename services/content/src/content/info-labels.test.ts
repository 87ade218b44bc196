import { ErrorCode, ServiceError } from '@berth/common/errors';
import { withoutEmpty } from '@berth/common/labels';
import { describe, expect, it } from 'vitest';
import { updatedLabels } from './info-labels.js';

describe('content info labels', () => {
  const current = { a: '1', b: '2' };

  it('replaces all labels without paths, or with the path "labels", dropping empty values', () => {
    expect(updatedLabels('d', current, { c: '3', e: '' }, [])).toEqual({ c: '3' });
    expect(updatedLabels('d', current, { c: '3', e: '' }, ['labels'])).toEqual({ c: '3' });
  });

  it('sets and removes single labels by path', () => {
    expect(updatedLabels('d', current, { b: '', c: '3', x: 'ignored' }, ['labels.b', 'labels.c'])).toEqual({
      a: '1',
      c: '3',
    });
  });

  it('refuses any other field', () => {
    let err: unknown;
    try {
      updatedLabels('sha256:x', current, {}, ['size']);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as ServiceError).code).toBe(ErrorCode.InvalidArgument);
  });

  it('withoutEmpty keeps non-empty values', () => {
    expect(withoutEmpty({ a: '', b: 'x' })).toEqual({ b: 'x' });
  });
});
