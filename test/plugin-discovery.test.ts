// Discovery in practice, through the CLI: plugins on SCALPELS_PLUGIN_PATH (a package folder, a
// folder of packages, a folder of checkouts), two versions of one tracer, a plugin that throws on
// import, one whose API range excludes this core, a bundle's presets.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { discoverPlugins } from '@scalpels/core/plugins';
import { PLUGIN_API_VERSION } from '@scalpels/core';
import { runCli } from '@scalpels/core/testing';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'cli/dist/main.js');
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-discovery-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function scalpels(args: string[], pluginPath: string[]) {
  return runCli(args, {
    cli,
    env: {
      XDG_DATA_HOME: join(scratch, 'xdg'),
      NO_COLOR: '1',
      SCALPELS_PLUGIN_PATH: pluginPath.join(delimiter),
    },
  });
}

/** A minimal plugin package in plain JS: a manifest whose worker prints one sample. */
function fakePlugin(
  dir: string,
  pkgName: string,
  version: string,
  opts: { apiVersion?: string; index?: string } = {},
): string {
  mkdirSync(dir, { recursive: true });
  const name = /scalpels-plugin-(.+)$/.exec(pkgName)![1]!;
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({
      name: pkgName,
      version,
      type: 'module',
      main: 'index.js',
      scalpels: { apiVersion: opts.apiVersion ?? '>=1.0.0 <2' },
    }),
  );
  writeFileSync(
    join(dir, 'index.js'),
    opts.index ??
      `export default {
  name: '${name}', version: '${version}', description: 'fake', apiVersion: '>=1.0.0 <2',
  target: 'none', options: {}, schema: { series: { '${name}.one': { kind: 'gauge', unit: 'count', description: 'one' } } },
  check: async () => ({ status: 'ok', detail: 'always' }),
  worker: () => ({ argv: [process.execPath, '-e', 'console.log(1); setInterval(() => {}, 1000)'] }),
  parser: () => ({ line: (t) => ({ kind: 'sample', series: '${name}.one', value: Number(t) }) }),
};
`,
  );
  return dir;
}

describe('plugin discovery through the CLI', () => {
  const a = join(scratch, 'a');
  const b = join(scratch, 'b');
  fakePlugin(join(a, 'scalpels-plugin-dup'), 'scalpels-plugin-dup', '1.0.0');
  fakePlugin(
    join(b, 'node_modules', '@acme', 'scalpels-plugin-dup'),
    '@acme/scalpels-plugin-dup',
    '2.0.0',
  );
  fakePlugin(join(a, 'scalpels-plugin-boom'), 'scalpels-plugin-boom', '0.1.0', {
    index: "throw new Error('boom at import');\n",
  });
  fakePlugin(join(a, 'scalpels-plugin-future'), 'scalpels-plugin-future', '3.0.0', {
    apiVersion: '>=2.0.0 <3',
  });
  // A checkout whose folder name says nothing: its package.json names it.
  fakePlugin(join(b, 'work-in-progress'), 'scalpels-plugin-wip', '0.0.1');

  interface Listed {
    name: string;
    package: string;
    version: string;
    status: string;
    detail: string;
    dir: string;
    source: string;
  }
  const list = async (): Promise<Listed[]> => {
    const r = await scalpels(['plugins', 'list', '--json'], [a, b]);
    expect(r.exitCode, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Listed[];
  };

  it('two versions of one tracer are a conflict that names both packages and locations', async () => {
    const dups = (await list()).filter((p) => p.name === 'dup');
    expect(dups.map((p) => `${p.package}@${p.version}`).sort()).toEqual([
      '@acme/scalpels-plugin-dup@2.0.0',
      'scalpels-plugin-dup@1.0.0',
    ]);
    const one = dups.find((p) => p.version === '1.0.0')!;
    const two = dups.find((p) => p.version === '2.0.0')!;
    expect(one.status).toBe('conflict');
    expect(two.status).toBe('conflict');
    expect(one.detail).toContain(`@acme/scalpels-plugin-dup@2.0.0 at ${two.dir}`);
    expect(two.detail).toContain(`scalpels-plugin-dup@1.0.0 at ${one.dir}`);
  });

  it('a plugin that throws on import is listed as broken with its error; the others still work', async () => {
    const all = await list();
    expect(all.find((p) => p.name === 'boom')).toMatchObject({ status: 'broken' });
    expect(all.find((p) => p.name === 'boom')!.detail).toContain('boom at import');
    expect(all.find((p) => p.name === 'proc')?.status).toBe('ok');
    expect(all.find((p) => p.name === 'wip')).toMatchObject({
      status: 'ok',
      source: 'SCALPELS_PLUGIN_PATH',
    });

    const store = `sqlite://${join(scratch, 'boom.db')}`;
    const ok = await scalpels(
      ['run', '-t', 'proc', '--store', store, '--format', 'none', '--', 'true'],
      [a, b],
    );
    expect(ok.exitCode, ok.stderr).toBe(0);
    const bad = await scalpels(
      ['run', '-t', 'boom', '--store', store, '--format', 'none', '--', 'true'],
      [a, b],
    );
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(
      /tracer "boom" \(scalpels-plugin-boom\) failed to load: .*boom at import/,
    );
  });

  it('a plugin whose API range excludes this core is refused with both versions named', async () => {
    const future = (await list()).find((p) => p.name === 'future')!;
    expect(future.status).toBe('incompatible');
    expect(future.detail).toContain('>=2.0.0 <3');
    expect(future.detail).toContain(PLUGIN_API_VERSION);
    const r = await scalpels(['run', '-t', 'future', '--format', 'none', '--', 'true'], [a, b]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(
      `needs plugin API >=2.0.0 <3; this core provides ${PLUGIN_API_VERSION}`,
    );
  });

  it('SCALPELS_PLUGIN_PATH may name a package folder itself', () => {
    const found = discoverPlugins({
      from: [],
      global: false,
      env: { SCALPELS_PLUGIN_PATH: join(b, 'work-in-progress') },
    });
    expect(found.map((p) => [p.name, p.state])).toEqual([['wip', 'ok']]);
  });
});
