import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests start real servers on fixed-free ports; keep files in separate forks.
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
  },
});
