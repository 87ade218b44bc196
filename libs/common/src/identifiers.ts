import { invalidArgument } from './errors.js';

/** containerd's identifier rules (`identifiers/validate.go`): namespaces, container ids, lease ids, topic parts. */
const maxLength = 76;
const alphanum = '[A-Za-z0-9]+';
const separators = '[._-]';
export const identifierPattern = new RegExp(`^${alphanum}(?:${separators}(?:${alphanum}))*$`);
const patternText = `^${alphanum}(?:${separators}(?:${alphanum}))*$`;

/** Throws invalid_argument with containerd's messages when `id` is not a valid identifier. */
export function validateIdentifier(id: string): void {
  if (id === '') throw invalidArgument('identifier must not be empty');
  if (id.length > maxLength) {
    throw invalidArgument(`identifier ${JSON.stringify(id)} greater than maximum length (${maxLength} characters)`);
  }
  if (!identifierPattern.test(id)) {
    throw invalidArgument(`identifier ${JSON.stringify(id)} must match ${patternText}`);
  }
}
