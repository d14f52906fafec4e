// `scalpels plugins new`, tried as a new plugin author would: scaffold into an empty folder,
// `npm install` (with @scalpels/core from a tarball made by `npm pack`, as it is not published
// yet), `npm test`, then the CLI finds the new tracer on SCALPELS_PLUGIN_PATH and records it.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLUGIN_API_VERSION } from '@scalpels/core';
import { runCli } from '@scalpels/core/testing';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'cli/dist/main.js');
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-scaffold-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const INSTALL_MS = 30 * 60_000;

function scalpels(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  return runCli(args, {
    cli,
    cwd: opts.cwd ?? scratch,
    env: { XDG_DATA_HOME: join(scratch, 'xdg'), NO_COLOR: '1', ...opts.env },
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
        'tsconfig.test.json',
        'src/index.ts',
        'src/worker.ts',
        'src/parser.ts',
        'src/schema.ts',
        'src/worker-main.ts',
        'test/parser.test.ts',
        'test/worker.test.ts',
        'test/conformance.test.ts',
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
      expect(pkg.scalpels.apiVersion).toBe(`>=${PLUGIN_API_VERSION} <2`);
      expect(pkg.peerDependencies['@scalpels/core']).toMatch(/^>=\d+\.\d+\.\d+$/);
      expect(pkg.devDependencies['@scalpels/core']).toBe(`file:${coreTarball}`);

      const install = await npm(['install'], pluginDir);
      expect(install.exitCode, install.all).toBe(0);
      expect(existsSync(join(pluginDir, 'dist/index.js')), 'prepare builds').toBe(true);

      const t = await npm(['test'], pluginDir);
      expect(t.exitCode, t.all).toBe(0);
      expect(t.all).toMatch(/# pass 7/);
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
        summary: {
          headline: { tracer: string; label: string; value: number }[];
          sections: { tracer: string; title: string }[];
        };
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
      // Its report view shapes the summary as it does for official plugins.
      expect(report.summary.sections.find((x) => x.tracer === 'hello')?.title).toBe(
        'hello: load and processes',
      );
      expect(report.summary.headline.map((f) => [f.tracer, f.label])).toEqual([
        ['hello', 'peak load'],
        ['hello', 'peak processes'],
      ]);
      const text = await scalpels(['report', '--last', '--store', store], { env });
      expect(text.stdout).toMatch(/^ {2}peak processes +\d+ +hello$/m);
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
