import { invalidArgument } from '@berth/common/errors';
import { validateLabels, withoutEmpty } from '@berth/common/labels';

export function validateInfoLabels(labels: Readonly<Record<string, string>>): void {
  try {
    validateLabels(labels);
  } catch (e) {
    throw invalidArgument(`info.Labels: ${(e as Error).message.replace(/: invalid argument$/, '')}`, e);
  }
}

/** What an Update does to a blob's labels (see labelChange). */
export interface LabelChange {
  /** When set, these stand for the current labels. */
  readonly replace: Readonly<Record<string, string>> | undefined;
  /** Keys removed, then */
  readonly drop: readonly string[];
  /** entries added or changed. */
  readonly set: Readonly<Record<string, string>>;
}

/**
 * The change an Update makes to a blob's labels, as the database applies it to the labels it holds (so an
 * Update needs no read first): `paths` (`labels`, `labels.<key>`), in order, say which of `requested` replace
 * the current ones; no paths replace them all; an empty value removes its key. Anything else is
 * invalid_argument, as containerd refuses it.
 */
export function labelChange(
  digest: string,
  requested: Readonly<Record<string, string>>,
  paths: readonly string[],
): LabelChange {
  if (paths.length === 0) return { replace: withoutEmpty(requested), drop: [], set: {} };
  let replace: Record<string, string> | undefined;
  const set = new Map<string, string>();
  const drop = new Set<string>();
  for (const path of paths) {
    if (path.startsWith('labels.')) {
      const key = path.slice('labels.'.length);
      const value = requested[key];
      if (value === undefined || value === '') {
        set.delete(key);
        drop.add(key);
      } else {
        drop.delete(key);
        set.set(key, value);
      }
    } else if (path === 'labels') {
      replace = withoutEmpty(requested);
      set.clear();
      drop.clear();
    } else {
      throw invalidArgument(`cannot update ${JSON.stringify(path)} field on content info ${JSON.stringify(digest)}`);
    }
  }
  return { replace, drop: [...drop], set: Object.fromEntries(set) };
}
