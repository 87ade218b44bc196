import { invalidArgument } from '@berth/common/errors';
import { validateLabels, withoutEmpty } from '@berth/common/labels';

export function validateInfoLabels(labels: Readonly<Record<string, string>>): void {
  try {
    validateLabels(labels);
  } catch (e) {
    throw invalidArgument(`info.Labels: ${(e as Error).message.replace(/: invalid argument$/, '')}`, e);
  }
}

/**
 * The labels an Update leaves on a blob: `paths` (`labels`, `labels.<key>`) say which of `requested` replace
 * the current ones; no paths replace them all. An empty value removes its key.
 */
export function updatedLabels(
  digest: string,
  current: Readonly<Record<string, string>>,
  requested: Readonly<Record<string, string>>,
  paths: readonly string[],
): Record<string, string> {
  if (paths.length === 0) return withoutEmpty(requested);
  let labels: Record<string, string> = { ...current };
  for (const path of paths) {
    if (path.startsWith('labels.')) {
      const key = path.slice('labels.'.length);
      const value = requested[key];
      if (value === undefined || value === '') delete labels[key];
      else labels[key] = value;
    } else if (path === 'labels') {
      labels = withoutEmpty(requested);
    } else {
      throw invalidArgument(`cannot update ${JSON.stringify(path)} field on content info ${JSON.stringify(digest)}`);
    }
  }
  return labels;
}
