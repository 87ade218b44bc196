import { wrap } from '@berth/common/errors';
import { validateLabels } from '@berth/common/labels';

export type StringMap = Readonly<Record<string, string>>;

/** containerd's label size rule, with the field named in front as containerd words it (`image.Labels: …`). */
export function validateLabelMap(field: string, labels: StringMap | undefined): void {
  try {
    validateLabels(labels);
  } catch (e) {
    throw wrap(e, field);
  }
}

/** The same labels with their keys sorted, so stored JSON and events are deterministic. */
export function sortedMap<V>(m: Readonly<Record<string, V>>): Record<string, V> {
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
