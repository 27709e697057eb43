import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Two cores: run two files at a time; end-to-end files start several processes each.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
