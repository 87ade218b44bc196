/**
 * Preloaded into a berthd under test (`--import …/loaded-modules.js`, BERTH_LOADED_MODULES naming a file): every
 * module the process loads through the ES module loader (ES modules, and the CommonJS modules they import) is
 * appended to that file, one URL a line. The hook runs on the loader's own thread.
 */
import { appendFileSync } from 'node:fs';
import { type LoadHook, register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

const file = process.env['BERTH_LOADED_MODULES'];

export const load: LoadHook = (url, context, next) => {
  if (file) appendFileSync(file, `${url}\n`);
  return next(url, context);
};

if (isMainThread && file) register(import.meta.url);
