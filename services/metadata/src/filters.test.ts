import { describe, expect, it } from 'vitest';
import { compileFilters, type FilterColumn, narrowingSql } from './filters.js';

describe('compileFilters', () => {
  it('reports a malformed filter as invalid_argument with containerd wording', () => {
    expect(() => compileFilters(['name=='])).toThrow(/^filters: parse error: \[name==\]: .*: invalid argument$/);
    try {
      compileFilters(['labels.']);
    } catch (e) {
      expect((e as { code: string }).code).toBe('invalid_argument');
    }
  });
});

describe('narrowingSql', () => {
  const columns = (path: readonly string[]): FilterColumn | undefined => {
    if (path.length === 1 && path[0] === 'name') return { kind: 'text', sql: 'name' };
    if (path.length === 1 && path[0] === 'labels') return { kind: 'map', sql: 'labels' };
    return undefined;
  };
  const narrow = (filters: string[]): [string | undefined, unknown[]] => {
    const params: unknown[] = ['ns'];
    return [narrowingSql(compileFilters(filters), columns, params), params];
  };

  it('narrows exact matches and presence, numbering placeholders after the given ones', () => {
    expect(narrow(['name==a'])).toEqual(['(name = $2)', ['ns', 'a']]);
    expect(narrow(['labels.a.b==1,name==x'])).toEqual([
      '((labels ->> $2::text) = $3 AND name = $4)',
      ['ns', 'a.b', '1', 'x'],
    ]);
    expect(narrow(['labels."k/v"'])).toEqual(['((labels ->> $2::text) IS NOT NULL)', ['ns', 'k/v']]);
    expect(narrow(['name==a', 'name==b'])).toEqual(['((name = $2) OR (name = $3))', ['ns', 'a', 'b']]);
    expect(narrow(['name==a,labels.x!=1'])[0]).toBe('(name = $2)');
  });

  it('says nothing where a match could escape the condition', () => {
    for (const f of [
      [],
      [''],
      ['name~=a'],
      ['name!=a'],
      ['name'],
      ['name.x==a'],
      ['labels==a'],
      ['other==a'],
      ['name==a', 'labels.x!=1'],
    ]) {
      expect(narrow(f)[0], JSON.stringify(f)).toBeUndefined();
    }
  });
});
