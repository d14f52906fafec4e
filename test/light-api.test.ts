// The plugin API a plugin (and its workers) imports stays light: `@scalpels/core/api`,
// `@scalpels/core` and `@scalpels/core/testing` load no package but the core itself, hence no
// native module (better-sqlite3), no Redis client and no DI container; those are the engine's
// (`@scalpels/core/engine`). Checked in a fresh Node whose module loader records every file.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const testDir = fileURLToPath(new URL('.', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-light-api-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const hooks = join(scratch, 'hooks.mjs');
writeFileSync(
  hooks,
  `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.LOADED_LOG, url + '\\n');
  return next(url, context);
}
`,
);
const register = join(scratch, 'register.mjs');
writeFileSync(
  register,
  `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`,
);

/** Every module URL a fresh Node loads to import `specifier` (from the test package). */
function loadedBy(specifier: string): string[] {
  const log = join(scratch, `${specifier.replace(/\W/g, '_')}.log`);
  writeFileSync(log, '');
  execFileSync(
    process.execPath,
    [
      '--import',
      register,
      '--input-type=module',
      '-e',
      `await import(${JSON.stringify(specifier)})`,
    ],
    {
      cwd: testDir,
      env: { ...process.env, LOADED_LOG: log },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  return readFileSync(log, 'utf8').split('\n').filter(Boolean);
}

describe('the plugin API loads no engine dependency', () => {
  it('the loader hook sees what the engine loads (control)', () => {
    const engine = loadedBy('@scalpels/core/engine');
    expect(engine.some((u) => u.includes('/node_modules/tsyringe/'))).toBe(true);
  });

  it.each(['@scalpels/core/api', '@scalpels/core', '@scalpels/core/testing'])('%s', (specifier) => {
    const loaded = loadedBy(specifier);
    expect(loaded.length).toBeGreaterThan(0);
    const packages = loaded.filter((u) => u.includes('/node_modules/') || u.endsWith('.node'));
    expect(packages).toEqual([]);
  });

  it('@scalpels/core/api is one file', () => {
    const loaded = loadedBy('@scalpels/core/api').filter((u) => !u.startsWith('node:'));
    expect(loaded).toHaveLength(1);
    expect(loaded[0]).toMatch(/\/core\/dist\/api\.js$/);
  });
});
