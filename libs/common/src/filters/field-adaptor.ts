/**
 * How a filter sees an object: a lookup from a field path (`['labels', 'a.b']` for `labels."a.b"`) to the
 * field's string value, or `undefined` when the object does not have that field.
 *
 * containerd's convention (followed by `adaptorFromObject`): string fields are absent when empty, and for
 * map fields the remaining path parts are joined with `.` to form the key.
 */
export interface FieldAdaptor {
  field(path: readonly string[]): string | undefined;
}
