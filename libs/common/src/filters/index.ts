/**
 * containerd's filter language (`filters` package of containerd 1.6) for List/Subscribe RPCs.
 *
 *   const filter = parseFilters(request.filters);            // throws FilterSyntaxError
 *   const hits = images.filter((img) => filter.match(adaptorFromObject({ name: img.name, labels: img.labels })));
 */

export type { AdaptorFields, AlwaysPresent, FieldSource } from './adaptor-from-object.js';
export { adaptorFromObject, alwaysPresent } from './adaptor-from-object.js';
export type { FieldAdaptor } from './field-adaptor.js';
export type { Filter } from './filter.js';
export { ALWAYS, AllOf, AnyOf, Operator, Selector } from './filter.js';
export { FilterSyntaxError } from './filter-syntax-error.js';
export { compileGoRegexp, type GoRegexp, GoRegexpError } from './go-regexp.js';
export { maxFilterLength, maxFilters, maxRegexpProgram, parseFilter, parseFilters } from './parser.js';
