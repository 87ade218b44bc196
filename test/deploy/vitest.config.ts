import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// The compose test alone, after the rest of the suite (`pnpm test` runs it last): it builds images and runs a
// Docker engine, which would starve the other integration tests of this machine's two cores.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/deploy/compose.test.ts'],
    testTimeout: 240_000,
    hookTimeout: 15 * 60_000,
  },
});
