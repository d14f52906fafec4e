// `scalpels plugins new`, tried as a new plugin author would: scaffold into an empty folder,
// `npm install` (with @scalpels/core from a tarball made by `npm pack`, as it is not published
// yet), `npm test`, then the CLI finds the new tracer on SCALPELS_PLUGIN_PATH and records it.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'cli/dist/main.js');
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-scaffold-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const INSTALL_MS = 30 * 60_000;

function scalpels(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  return execa(process.execPath, [cli, ...args], {
    reject: false,
    cwd: opts.cwd ?? scratch,
    env: { XDG_DATA_HOME: join(scratch, 'xdg'), NO_COLOR: '1', ...opts.env },
    extendEnv: true,
    timeout: 120_000,
  });
}

function npm(args: string[], cwd: string) {
  return execa('npm', args, {
    cwd,
    reject: false,
    timeout: INSTALL_MS,
    all: true,
    env: {
      npm_config_fund: 'false',
      npm_config_audit: 'false',
      npm_config_update_notifier: 'false',
    },
  });
}

let coreTarball = '';
const pluginDir = join(scratch, 'hello');

beforeAll(async () => {
  const packs = join(scratch, 'packs');
  mkdirSync(packs);
  const r = await npm(['pack', '--pack-destination', packs, join(root, 'core')], scratch);
  expect(r.exitCode, r.all).toBe(0);
  coreTarball = join(packs, r.stdout.trim().split('\n').at(-1)!);
  expect(existsSync(coreTarball), coreTarball).toBe(true);
}, INSTALL_MS);

describe('scalpels plugins new', () => {
  it('refuses a bad name and a folder that is not empty, in one line, exit 1', async () => {
    const bad = await scalpels(['plugins', 'new', 'Hello_World']);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/"Hello_World" is not a tracer name/);
    const full = join(scratch, 'full');
    mkdirSync(full);
    writeFileSync(join(full, 'keep.txt'), 'mine');
    const r = await scalpels(['plugins', 'new', 'x', '--dir', full]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/is not empty/);
    expect(readFileSync(join(full, 'keep.txt'), 'utf8')).toBe('mine');
  });

  it('in a folder that is not empty, writes ./scalpels-plugin-NAME', async () => {
    const cwd = join(scratch, 'project');
    mkdirSync(cwd);
    writeFileSync(join(cwd, 'notes.txt'), '');
    const r = await scalpels(['plugins', 'new', 'other'], { cwd });
    expect(r.exitCode, r.stderr).toBe(0);
    const pkg = JSON.parse(
      readFileSync(join(cwd, 'scalpels-plugin-other', 'package.json'), 'utf8'),
    ) as { name: string };
    expect(pkg.name).toBe('scalpels-plugin-other');
  });

  it(
    'writes a package whose npm install and npm test pass, and scalpels run records it',
    async () => {
      mkdirSync(pluginDir);
      // @scalpels/core is not on the registry yet: the author points the scaffold at a tarball.
      const made = await scalpels(['plugins', 'new', 'hello', '--core', `file:${coreTarball}`], {
        cwd: pluginDir,
      });
      expect(made.exitCode, made.stderr).toBe(0);
      for (const f of [
        'package.json',
        'README.md',
        '.gitignore',
        'tsconfig.json',
        'src/index.ts',
        'src/worker.ts',
        'src/parser.ts',
        'src/schema.ts',
        'scripts/sample.mjs',
        'test/parser.test.ts',
        'test/worker.test.ts',
        'testdata/sample-0.1.0-system/stdout.txt',
        'testdata/sample-0.1.0-system/expected.json',
      ])
        expect(existsSync(join(pluginDir, f)), f).toBe(true);
      const pkg = JSON.parse(readFileSync(join(pluginDir, 'package.json'), 'utf8')) as {
        name: string;
        scalpels: { apiVersion: string };
        peerDependencies: Record<string, string>;
        devDependencies: Record<string, string>;
      };
      expect(pkg.name).toBe('scalpels-plugin-hello');
      expect(pkg.scalpels.apiVersion).toBe('>=1.0.0 <2');
      expect(pkg.peerDependencies['@scalpels/core']).toMatch(/^>=\d+\.\d+\.\d+$/);
      expect(pkg.devDependencies['@scalpels/core']).toBe(`file:${coreTarball}`);

      const install = await npm(['install'], pluginDir);
      expect(install.exitCode, install.all).toBe(0);
      expect(existsSync(join(pluginDir, 'dist/src/index.js')), 'prepare builds').toBe(true);

      const t = await npm(['test'], pluginDir);
      expect(t.exitCode, t.all).toBe(0);
      expect(t.all).toMatch(/# pass 6/);
      expect(t.all).toMatch(/# fail 0/);

      const store = `sqlite://${join(scratch, 'hello.db')}`;
      const env = { SCALPELS_PLUGIN_PATH: pluginDir };
      const list = await scalpels(['plugins', 'list', '--json'], { env });
      const hello = (
        JSON.parse(list.stdout) as { name: string; source: string; status: string }[]
      ).find((p) => p.name === 'hello');
      expect(hello).toMatchObject({ source: 'SCALPELS_PLUGIN_PATH', status: 'ok' });

      const run = await scalpels(
        ['run', '-t', 'hello', '--store', store, '--format', 'none', '--', 'true'],
        { env },
      );
      expect(run.exitCode, run.stderr).toBe(0);
      const rep = await scalpels(['report', '--last', '--format', 'json', '--store', store], {
        env,
      });
      expect(rep.exitCode, rep.stderr).toBe(0);
      const report = JSON.parse(rep.stdout) as {
        tracers: {
          tracer: string;
          status: string;
          records: number;
          parseErrors: number;
          plugin: { package: string };
          series: { name: string; points: number; min: number }[];
        }[];
      };
      const tracer = report.tracers.find((x) => x.tracer === 'hello')!;
      expect(tracer).toMatchObject({
        status: 'stopped',
        parseErrors: 0,
        plugin: { package: 'scalpels-plugin-hello' },
      });
      expect(tracer.records).toBeGreaterThanOrEqual(2);
      const processes = tracer.series.find((s) => s.name === 'hello.processes')!;
      // The target is `true` (through the launcher): a few processes, never the whole node.
      expect(processes.points).toBeGreaterThanOrEqual(1);
      expect(processes.min).toBeLessThan(10);
    },
    INSTALL_MS,
  );

  it('its tests can fail: wrong expected records make npm test fail', async () => {
    const expectedFile = join(pluginDir, 'testdata/sample-0.1.0-system/expected.json');
    if (!existsSync(join(pluginDir, 'node_modules'))) return; // the install test failed already
    const good = readFileSync(expectedFile, 'utf8');
    try {
      const expected = JSON.parse(good) as { records: { value: number }[] };
      expected.records[0]!.value += 1;
      writeFileSync(expectedFile, JSON.stringify(expected));
      const t = await npm(['test'], pluginDir);
      expect(t.exitCode).not.toBe(0);
      expect(t.all).toMatch(/# fail 1/);
    } finally {
      writeFileSync(expectedFile, good);
    }
  }, 120_000);
});
