import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    // The compose test runs on its own, after the rest (test/deploy/vitest.config.ts, `pnpm test:compose`).
    exclude: ['**/node_modules/**', '**/dist/**', 'test/deploy/compose.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests share one machine's Postgres, NATS, runc and mounts; keep files serial
    // enough that they do not starve each other on two cores.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
