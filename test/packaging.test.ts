// Packaging, tried as a user would: pack core, the CLI, a plugin and the OpenStack bundle, install
// the tarballs into an empty npm prefix, and use the `scalpels` installed there.
// Core has no workspace dependency, so `npm pack` packs it as is; the CLI, plugins and bundles
// depend on siblings with `workspace:^`, which `pnpm pack` turns into real version ranges.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-packaging-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const INSTALL_MS = 30 * 60_000;
const packs = join(scratch, 'packs');
const prefix = join(scratch, 'prefix');
const bin = join(prefix, 'bin', 'scalpels');
const npmEnv = {
  npm_config_fund: 'false',
  npm_config_audit: 'false',
  npm_config_update_notifier: 'false',
};

/** The packages a user installs, and what each tarball must hold. */
const PACKAGES = [
  { dir: 'core', tool: 'npm', must: ['dist/index.d.ts', 'dist/testing/index.js', 'launcher'] },
  { dir: 'cli', tool: 'pnpm', must: ['dist/main.js', 'templates/plugin/package.json.tmpl'] },
  { dir: 'plugins/proc', tool: 'pnpm', must: ['dist/index.d.ts'] },
  { dir: 'bundles/openstack', tool: 'pnpm', must: [] },
] as const;

const tarballs = new Map<string, string>();

async function tarList(tgz: string): Promise<string[]> {
  const r = await execa('tar', ['tzf', tgz]);
  return r.stdout.split('\n').map((f) => f.replace(/^package\//, ''));
}

async function tarPackageJson(tgz: string): Promise<Record<string, unknown>> {
  const r = await execa('tar', ['xzf', tgz, '-O', 'package/package.json']);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

function scalpels(args: string[], cwd = scratch) {
  const env: Record<string, string | undefined> = {
    ...process.env,
    XDG_DATA_HOME: join(scratch, 'xdg'),
    NO_COLOR: '1',
    SCALPELS_PLUGIN_PATH: undefined,
    npm_config_prefix: undefined,
    NPM_CONFIG_PREFIX: undefined,
  };
  return execa(bin, args, { reject: false, cwd, env, extendEnv: false, timeout: 120_000 });
}

beforeAll(async () => {
  mkdirSync(packs);
  for (const p of PACKAGES) {
    const args = ['pack', '--pack-destination', packs];
    const before = new Set(readdirSync(packs));
    const r = await execa(p.tool, args, {
      cwd: join(root, p.dir),
      env: npmEnv,
      all: true,
      reject: false,
    });
    expect(r.exitCode, r.all).toBe(0);
    const made = readdirSync(packs).filter((f) => !before.has(f));
    expect(made, r.all).toHaveLength(1);
    tarballs.set(p.dir, join(packs, made[0]!));
  }
  // Absolute paths: npm reads `dir/x.tgz` as a GitHub shorthand.
  const r = await execa('npm', ['i', '-g', '--prefix', prefix, ...tarballs.values()], {
    cwd: scratch,
    env: npmEnv,
    all: true,
    reject: false,
    timeout: INSTALL_MS,
  });
  expect(r.exitCode, r.all).toBe(0);
}, INSTALL_MS);

describe('packages from npm pack, installed into an empty prefix', () => {
  it('every tarball has its build with types, files, exports, engines, a README, no workspace: ranges', async () => {
    for (const p of PACKAGES) {
      const tgz = tarballs.get(p.dir)!;
      const files = await tarList(tgz);
      for (const f of ['package.json', 'README.md', ...p.must])
        expect(
          files.some((x) => x === f || x.startsWith(`${f}/`)),
          `${p.dir}: ${f} in ${tgz}`,
        ).toBe(true);
      expect(
        files.filter((f) => /\.test\.(js|ts)$/.test(f) || f.startsWith('src/')),
        `${p.dir} ships no tests or sources`,
      ).toEqual([]);
      const pkg = await tarPackageJson(tgz);
      expect(pkg.files, p.dir).toBeInstanceOf(Array);
      expect(pkg.exports, p.dir).toBeTypeOf('object');
      expect((pkg.engines as { node?: string } | undefined)?.node, p.dir).toMatch(/^>=20/);
      expect(JSON.stringify(pkg), p.dir).not.toContain('workspace:');
    }
  });

  it('scalpels plugins list --json there shows the plugin with its version, and the bundle', async () => {
    expect(existsSync(bin), bin).toBe(true);
    const r = await scalpels(['plugins', 'list', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout) as {
      name: string;
      package: string;
      version: string;
      status: string;
      dir: string;
    }[];
    const proc = list.find((p) => p.name === 'proc');
    expect(proc).toMatchObject({
      package: '@scalpels/plugin-proc',
      version: '0.1.0',
      status: 'ok',
    });
    expect(proc!.dir.startsWith(prefix)).toBe(true);
    expect(list.find((p) => p.package === '@scalpels/bundle-openstack')).toMatchObject({
      status: 'ok',
    });
    expect(
      list.every((p) => p.dir.startsWith(prefix)),
      'nothing from the workspace',
    ).toBe(true);
  });

  it('scalpels run -t proc -- sleep 1 works from there and stores a report', async () => {
    const store = `sqlite://${join(scratch, 'run.db')}`;
    const r = await scalpels([
      'run',
      '-t',
      'proc',
      '--store',
      store,
      '--format',
      'none',
      '--',
      'sleep',
      '1',
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const rep = await scalpels(['report', '--last', '--format', 'json', '--store', store]);
    expect(rep.exitCode, rep.stderr).toBe(0);
    const report = JSON.parse(rep.stdout) as {
      tracers: { tracer: string; status: string; records: number }[];
    };
    expect(report.tracers[0]).toMatchObject({ tracer: 'proc', status: 'stopped' });
    expect(report.tracers[0]!.records).toBeGreaterThan(0);
    // The HTML report inlines uPlot from core's installed dependency, and the plugin's view.
    const html = await scalpels(['report', '--last', '--format', 'html', '--store', store]);
    expect(html.exitCode, html.stderr).toBe(0);
    expect(html.stdout).toContain('https://github.com/leeoniya/uPlot');
    expect(html.stdout).toContain('Traced process trees, by CPU time');
  });

  it('presets and the plugin scaffold work from the installed CLI', async () => {
    const presets = await scalpels(['presets', '--json']);
    expect(presets.exitCode, presets.stderr).toBe(0);
    const names = (JSON.parse(presets.stdout) as { presets: { name: string }[] }).presets.map(
      (p) => p.name,
    );
    expect(names).toEqual(['openstack-compute', 'openstack-controller']);
    const dir = join(scratch, 'newplugin');
    mkdirSync(dir);
    const made = await scalpels(['plugins', 'new', 'hello'], dir);
    expect(made.exitCode, made.stderr).toBe(0);
    expect(existsSync(join(dir, 'src', 'index.ts'))).toBe(true);
    expect(existsSync(join(dir, 'testdata', 'sample-0.1.0-system', 'expected.json'))).toBe(true);
  });
});
