// Presets from bundles on SCALPELS_PLUGIN_PATH: parsing, lookup and expansion into tracers,
// settings and the services that run here (a renamed copy of sleep is the running service).
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DiscoveredPlugin } from './discovery.js';
import { expandPreset, findPreset, matchServices, parseBundle, presetCatalog } from './presets.js';
import { PluginRegistry } from './registry.js';

const root = mkdtempSync(join(tmpdir(), 'scalpels-presets-'));
const service = `psvc${process.pid % 100000}`;
const serviceBin = join(root, service);
copyFileSync('/bin/sleep', serviceBin);
const child = spawn(serviceBin, ['600'], { stdio: 'ignore' });

beforeAll(async () => {
  // Wait until the service is visible in /proc under its name.
  const end = Date.now() + 30_000;
  while (matchServices([{ name: service, match: [service] }])[0]!.pids.length === 0) {
    if (Date.now() > end) throw new Error(`${service} did not show up in /proc`);
    await new Promise((r) => setTimeout(r, 20));
  }
});
afterAll(() => {
  child.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

function pkg(dir: string, json: unknown, index?: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify(json));
  if (index !== undefined) writeFileSync(join(dir, 'index.js'), index);
}

const manifest = (name: string, check: string) => `export default {
  name: '${name}', version: '1.0.0', description: 'test', apiVersion: '>=1.0.0 <2',
  options: { interval: { type: 'string', default: '1s', description: 'i' } }, target: 'none',
  schema: { series: {} }, check: async () => (${check}),
  worker: () => ({ argv: ['true'] }), parser: () => ({ line: () => null }) };`;

const plugin = (name: string, check: string) =>
  pkg(
    join(root, 'nm', `scalpels-plugin-${name}`),
    {
      name: `scalpels-plugin-${name}`,
      version: '1.0.0',
      type: 'module',
      main: 'index.js',
      scalpels: { apiVersion: '^1.0.0' },
    },
    manifest(name, check),
  );
plugin('pshello', "{ status: 'ok', detail: 'fine' }");
plugin('pssick', "{ status: 'missing', detail: 'no probe here', hint: 'load the module' }");

const bundle = (name: string, presets: unknown) =>
  pkg(join(root, 'nm', `scalpels-bundle-${name}`), {
    name: `scalpels-bundle-${name}`,
    version: '2.0.0',
    scalpels: { apiVersion: '^1.0.0', bundle: { presets } },
  });
bundle('site', {
  web: {
    description: 'web node',
    tracers: {
      pshello: { options: { interval: '200ms', n: 3, flag: false, list: ['a', 'b'] } },
      pssick: { optional: true },
      psnosuch: { optional: true },
    },
    services: ['psnotrunning', { name: 'app', match: ['psnotrunning2', service] }],
  },
  plain: { tracers: { pshello: true } },
});
bundle('other', { web: { tracers: { pshello: true } } });
bundle('broken', { 'Bad Name': { tracers: { pshello: true } } });

// The global prefix points to an empty folder: bundles installed on this machine stay out.
const registry = () =>
  new PluginRegistry([], {
    SCALPELS_PLUGIN_PATH: join(root, 'nm'),
    npm_config_prefix: join(root, 'no-global'),
  } as NodeJS.ProcessEnv);

const asBundle = (presets: unknown): DiscoveredPlugin =>
  ({
    name: 'x',
    package: 'scalpels-bundle-x',
    version: '1.0.0',
    dir: '/x',
    bundle: { presets },
  }) as unknown as DiscoveredPlugin;

describe('parseBundle', () => {
  it('reads tracers, options as text, and services as names or match lists', () => {
    const [p] = parseBundle(
      asBundle({
        a: {
          description: 'd',
          tracers: { t: { options: { n: 1, b: true, l: ['x', 'y'] }, optional: true }, u: true },
          services: ['s1', { name: 's2', match: ['m1', 'm2'] }],
        },
      }),
    );
    expect(p).toEqual({
      name: 'a',
      description: 'd',
      bundle: { name: 'x', package: 'scalpels-bundle-x', version: '1.0.0', dir: '/x' },
      tracers: [
        { name: 't', options: { n: '1', b: 'true', l: 'x,y' }, optional: true },
        { name: 'u', options: {}, optional: false },
      ],
      services: [
        { name: 's1', match: ['s1'] },
        { name: 's2', match: ['m1', 'm2'] },
      ],
    });
  });

  it('names what is wrong in one line', () => {
    const bad: [unknown, string][] = [
      [[], '"scalpels.bundle.presets" must be an object of presets'],
      [{ 'A B': { tracers: { t: true } } }, 'preset "A B": bad preset name'],
      [{ a: 1 }, 'preset "a" must be an object'],
      [{ a: { tracers: {} } }, 'preset "a": "tracers" must name at least one tracer'],
      [{ a: { tracers: { t: 1 } } }, 'preset "a": tracer "t" must be an object'],
      [{ a: { tracers: { t: { options: [] } } } }, 'preset "a": "t.options" must be an object'],
      [
        { a: { tracers: { t: { options: { k: { x: 1 } } } } } },
        'preset "a": option t.k must be a string, number or boolean',
      ],
      [{ a: { tracers: { t: true }, services: 's' } }, 'preset "a": "services" must be a list'],
      [
        { a: { tracers: { t: true }, services: [{ name: 's', match: [''] }] } },
        'preset "a": a service must be a name or {"name", "match": [names]}',
      ],
    ];
    for (const [presets, message] of bad)
      expect(() => parseBundle(asBundle(presets)), message).toThrow(message);
  });
});

describe('presetCatalog and findPreset', () => {
  it('lists the presets of usable bundles, sorted, and the unusable bundles with why', () => {
    const c = presetCatalog(registry());
    expect(c.presets.map((p) => `${p.bundle.package}:${p.name}`)).toEqual([
      'scalpels-bundle-site:plain',
      'scalpels-bundle-other:web',
      'scalpels-bundle-site:web',
    ]);
    expect(c.problems).toHaveLength(1);
    expect(c.problems[0]).toMatch(/^scalpels-bundle-broken@2\.0\.0 \(.*\): preset "Bad Name"/);
  });

  it('asks for BUNDLE/NAME when two bundles offer a name, and refuses an unknown one', () => {
    const reg = registry();
    expect(() => findPreset(reg, 'web')).toThrow(
      'preset "web" is offered by scalpels-bundle-other@2.0.0 and scalpels-bundle-site@2.0.0: write BUNDLE/web',
    );
    expect(findPreset(reg, 'site/web').bundle.package).toBe('scalpels-bundle-site');
    expect(findPreset(reg, 'scalpels-bundle-other/web').bundle.package).toBe(
      'scalpels-bundle-other',
    );
    expect(findPreset(reg, 'plain').name).toBe('plain');
    expect(() => findPreset(reg, 'nope', 'install more')).toThrow(
      /^unknown preset "nope" \(installed: plain, web, web; install more\); unusable bundles: scalpels-bundle-broken@2\.0\.0 /,
    );
    try {
      findPreset(reg, 'nope');
    } catch (e) {
      expect((e as Error).name).toBe('UserError');
      expect((e as Error).message).toContain('a bundle package adds presets');
    }
  });
});

describe('expandPreset', () => {
  it('run: the preset tracers that can run here, its options before the user settings', async () => {
    const x = await expandPreset(
      registry(),
      { preset: 'site/web', tracers: ['extra,pshello'], settings: ['pshello.interval=5s'] },
      'run',
    );
    expect(x.tracers).toEqual(['pshello', 'extra']);
    expect(x.settings).toEqual([
      'pshello.interval=200ms',
      'pshello.n=3',
      'pshello.flag=false',
      'pshello.list=a,b',
      'pshello.interval=5s',
    ]);
    expect(x.services).toBeUndefined();
    expect(x.notes).toEqual([
      'optional tracer pssick left out: no probe here (fix: load the module)',
      'optional tracer psnosuch left out: not installed (npm i -g scalpels-plugin-psnosuch or @scalpels/plugin-psnosuch)',
      "run traces the command; the preset's services (psnotrunning, app) are traced by scalpels start --preset web",
    ]);
  });

  it('keeps an optional tracer the user names', async () => {
    const x = await expandPreset(registry(), { preset: 'site/web', tracers: ['pssick'] }, 'run');
    expect(x.tracers).toEqual(['pshello', 'pssick']);
  });

  it('start: traces the services found here and names those not found', async () => {
    const x = await expandPreset(registry(), { preset: 'site/web' }, 'start');
    expect(x.services).toEqual([service]);
    expect(x.notes).toContain(
      `services not found (not traced): psnotrunning; traced: app (${service})`,
    );
  });

  it('start: user targets replace the services; in cluster mode they are not looked up', async () => {
    const given = await expandPreset(registry(), { preset: 'site/web', pids: [1] }, 'start');
    expect(given.services).toBeUndefined();
    expect(given.notes).toContain('--service/--pid given: they replace the preset\u2019s services');
    const cluster = await expandPreset(registry(), { preset: 'site/web', cluster: true }, 'start');
    expect(cluster.services).toBeUndefined();
    expect(cluster.notes.at(-1)).toMatch(/^with --redis its services \(psnotrunning, app\)/);
  });

  it('start: refuses when none of the services runs here', async () => {
    bundle('lonely', {
      lonely: { tracers: { pshello: true }, services: ['psnothere1', 'psnothere2'] },
    });
    await expect(expandPreset(registry(), { preset: 'lonely' }, 'start')).rejects.toThrow(
      'preset lonely: none of its services runs here: not found: psnothere1, psnothere2 (looked for psnothere1, psnothere2); give --service or --pid to trace others',
    );
  });
});
