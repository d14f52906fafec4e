import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Only for recording testdata on purpose; the workspace test run never includes this file.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../../../', import.meta.url)),
    include: ['plugins/sql-queries/test/record-testdata.ts'],
    testTimeout: 120_000,
  },
});
