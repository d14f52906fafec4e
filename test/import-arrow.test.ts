// The lint rule that holds the arrow cli -> core <- plugins, run through the workspace's own
// ESLint configuration on fixture sources placed (virtually) where they would do harm.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const fixture = (name: string): string =>
  readFileSync(new URL(`./fixtures/import-arrow/${name}`, import.meta.url), 'utf8');

const eslint = new ESLint({ cwd: root });
async function arrowErrors(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${root}/${filePath}` });
  return result!.messages
    .filter((m) => m.ruleId === 'scalpels/import-arrow')
    .map((m) => `${m.line}: ${m.message}`);
}

describe('lint rule scalpels/import-arrow', { timeout: 120_000 }, () => {
  it('pnpm run lint fails on a core file that imports a plugin', async () => {
    // The real command line, as CI runs it, on the fixture piped in as a core source file.
    const r = await new Promise<{ code: number; out: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        [
          `${root}/node_modules/eslint/bin/eslint.js`,
          '--stdin',
          '--stdin-filename',
          'core/src/fixture-imports-plugin.ts',
        ],
        { cwd: root, timeout: 110_000 },
        (err, stdout, stderr) =>
          resolve({ code: err ? Number(err.code) : 0, out: String(stdout) + String(stderr) }),
      );
      child.stdin!.end(fixture('core-imports-plugin.ts.txt'));
    });
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain('scalpels/import-arrow');
    expect(r.out).toContain('the core imports no plugin');
  });

  it('flags every way the core can reach a plugin, a bundle or the CLI', async () => {
    const errors = await arrowErrors(fixture('core-imports-plugin.ts.txt'), 'core/src/x.ts');
    expect(errors).toEqual([
      expect.stringMatching(/^2: .*@scalpels\/plugin-proc is plugin proc/),
      expect.stringMatching(
        /^3: .*\.\.\/\.\.\/plugins\/syscalls\/src\/parser\.js is plugin syscalls/,
      ),
      expect.stringMatching(/^4: .*@scalpels\/cli is the CLI/),
      expect.stringMatching(/^5: .*scalpels-plugin-extra is plugin extra/),
      expect.stringMatching(/^6: .*@scalpels\/bundle-openstack is bundle openstack/),
      expect.stringMatching(/^7: .*@acme\/scalpels-plugin-x is plugin x/),
      expect.stringMatching(/^8: .*@scalpels\/plugin-fs-io is plugin fs-io/),
    ]);
  });

  it('lets a plugin import the core API, the testing kit, its own files and third parties only', async () => {
    const errors = await arrowErrors(
      fixture('plugin-imports.ts.txt'),
      'plugins/proc/src/fixture.ts',
    );
    expect(errors).toEqual([
      expect.stringMatching(/^8: .*not plugin syscalls \(@scalpels\/plugin-syscalls\)/),
      expect.stringMatching(/^9: .*not plugin syscalls \(\.\.\/\.\.\/syscalls\/src\/parser\.js\)/),
      expect.stringMatching(/^10: .*not the CLI \(@scalpels\/cli\)/),
      expect.stringMatching(
        /^11: .*only @scalpels\/core, @scalpels\/core\/api, @scalpels\/core\/testing and @scalpels\/core\/procfs .* not @scalpels\/core\/engine/,
      ),
      expect.stringMatching(/^12: .*not \.\.\/\.\.\/\.\.\/core\/src\/api\.js/),
      expect.stringMatching(
        /^13: .*self-contained: \.\.\/\.\.\/\.\.\/test\/setup\.js leaves its folder/,
      ),
      expect.stringMatching(/^14: .*not plugin syscalls \(@scalpels\/plugin-syscalls\)/),
    ]);
  });

  it('lets a plugin and its workers read /proc through @scalpels/core/procfs, not by path', async () => {
    expect(
      await arrowErrors(
        "import { processTree } from '@scalpels/core/procfs';\n" +
          "import { readStat } from '../../../core/src/procfs.js';\n",
        'plugins/fs-io/src/worker-main.ts',
      ),
    ).toEqual([expect.stringMatching(/^2: .*not \.\.\/\.\.\/\.\.\/core\/src\/procfs\.js/)]);
  });

  it('applies to plugin tests too, and lets the CLI use the core but not a plugin', async () => {
    expect(
      await arrowErrors(
        "import plugin from '@scalpels/plugin-rpc-calls';\n",
        'plugins/proc/test/x.test.ts',
      ),
    ).toHaveLength(1);
    expect(
      await arrowErrors(
        "import { Engine } from '@scalpels/core/engine';\nimport p from '@scalpels/plugin-proc';\n",
        'cli/src/commands/x.ts',
      ),
    ).toEqual([expect.stringMatching(/^2: the CLI imports no plugin/)]);
  });
});
