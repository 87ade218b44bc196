import { ErrorCode, ServiceError } from '@berth/common/errors';
import { withoutEmpty } from '@berth/common/labels';
import { describe, expect, it } from 'vitest';
import { type LabelChange, labelChange } from './info-labels.js';

/** What content-repo's updateLabels statement does with a change. */
function applied(current: Record<string, string>, c: LabelChange): Record<string, string> {
  const out: Record<string, string> = { ...(c.replace ?? current) };
  for (const k of c.drop) delete out[k];
  return { ...out, ...c.set };
}

describe('content info labels', () => {
  const current = { a: '1', b: '2' };

  it('replaces all labels without paths, or with the path "labels", dropping empty values', () => {
    expect(applied(current, labelChange('d', { c: '3', e: '' }, []))).toEqual({ c: '3' });
    expect(applied(current, labelChange('d', { c: '3', e: '' }, ['labels']))).toEqual({ c: '3' });
  });

  it('sets and removes single labels by path', () => {
    expect(applied(current, labelChange('d', { b: '', c: '3', x: 'ignored' }, ['labels.b', 'labels.c']))).toEqual({
      a: '1',
      c: '3',
    });
  });

  it('applies the paths in order: a later "labels" replaces earlier single changes, later ones apply to it', () => {
    expect(applied(current, labelChange('d', { a: '', c: '3' }, ['labels.a', 'labels', 'labels.b']))).toEqual({
      c: '3',
    });
    expect(applied(current, labelChange('d', { a: '9', b: '' }, ['labels', 'labels.a']))).toEqual({ a: '9' });
    expect(applied(current, labelChange('d', { a: '' }, ['labels.a', 'labels.a']))).toEqual({ b: '2' });
  });

  it('refuses any other field', () => {
    let err: unknown;
    try {
      labelChange('sha256:x', {}, ['size']);
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
