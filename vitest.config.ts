import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests share one machine's Postgres, NATS, runc and mounts; keep files serial
    // enough that they do not starve each other on two cores.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
