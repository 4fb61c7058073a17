import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real sockets and a real browser: give slow CI machines room, but every test still bounds its own loops.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // globalThis.gc, for tests that check what an idle session lets the collector take (gateway.test.ts).
    execArgv: ['--expose-gc'],
    reporters: ['default'],
  },
});
