/**
 * Temporary directories that are removed by the test (remove()) or, failing that, at process exit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onProcessExit } from './cleanup.js';

export interface TempDir {
  /** Absolute path of the new, empty directory (mode 0700, owned by the current user). */
  readonly path: string;
  /** Deletes the directory and everything below it. Idempotent. */
  remove(): Promise<void>;
}

/**
 * Creates a fresh directory under the OS temp dir, named `<prefix><random>`.
 * It is also deleted at process exit if `remove()` was never called.
 */
export function tempDir(prefix: string): TempDir {
  const path = mkdtempSync(join(tmpdir(), prefix));
  const unregister = onProcessExit(() => rmSync(path, { recursive: true, force: true }));
  return {
    path,
    async remove() {
      unregister();
      await rm(path, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}
