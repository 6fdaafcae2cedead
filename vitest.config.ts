import { defineConfig } from 'vitest/config'

const shared = { testTimeout: 30_000, hookTimeout: 60_000, pool: 'forks' as const }

export default defineConfig({
  test: {
    projects: [
      { test: { ...shared, name: 'all', include: ['test/**/*.test.ts'] } },
      {
        // The Redis store's suites again on the hash layout of a key's current periods (test/support/stores.ts).
        test: {
          ...shared,
          name: 'redis-hash',
          include: ['test/integration/*.test.ts'],
          // (Not the suites defined for one layout: each names it.)
          exclude: ['test/integration/sqlite-*.test.ts', 'test/integration/*-redis.test.ts'],
          env: { LOOPERS_TEST_REDIS_LAYOUT: 'hash' },
        },
      },
    ],
  },
})
