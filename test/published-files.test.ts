// What `pnpm pack` would publish for every plugin that ships Python scripts: never Python
// bytecode, which the interpreter drops beside a script when it imports it (a test run, a dev
// checkout), and which would otherwise ride along in the tarball.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const withScripts = readdirSync(join(root, 'plugins'))
  .map((name) => join('plugins', name))
  .filter(
    (dir) =>
      existsSync(join(root, dir, 'scripts')) &&
      readdirSync(join(root, dir, 'scripts')).some((f) => f.endsWith('.py')),
  );

describe('published files', () => {
  it('finds the plugins that ship Python scripts', () => {
    expect(withScripts).toContain(join('plugins', 'python-calls'));
  });

  for (const dir of withScripts) {
    it(
      `${dir} publishes its scripts but no __pycache__ or .pyc`,
      { timeout: 120_000 },
      async () => {
        // Planted the way Python writes it, so the check cannot pass just because none is there now.
        const cache = join(root, dir, 'scripts', '__pycache__');
        const cacheExisted = existsSync(cache);
        const planted = join(cache, `scalpels-pack-check-${randomUUID()}.cpython-311.pyc`);
        const loose = join(root, dir, 'scripts', `scalpels-pack-check-${randomUUID()}.pyc`);
        mkdirSync(cache, { recursive: true });
        writeFileSync(planted, 'not really bytecode');
        writeFileSync(loose, 'not really bytecode');
        try {
          const r = await execa('pnpm', ['pack', '--dry-run', '--json'], {
            cwd: join(root, dir),
            reject: false,
          });
          expect(r.exitCode, r.stderr).toBe(0);
          const files = (JSON.parse(r.stdout) as { files: { path: string }[] }).files.map(
            (f) => f.path,
          );
          expect(files.filter((f) => f.startsWith('scripts/')).length).toBeGreaterThan(0);
          expect(files.filter((f) => /__pycache__|\.pyc$/.test(f))).toEqual([]);
        } finally {
          rmSync(planted, { force: true });
          rmSync(loose, { force: true });
          if (!cacheExisted) {
            try {
              rmdirSync(cache); // only if empty: a concurrent Python run may have written there
            } catch {
              // Not empty: leave it to whoever wrote into it.
            }
          }
        }
      },
    );
  }
});
