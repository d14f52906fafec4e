import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { discoverPlugins, tracerNameOf } from './discovery.js';
import { PluginRegistry } from './registry.js';
import { PLUGIN_API_VERSION } from './api.js';

const root = mkdtempSync(join(tmpdir(), 'scalpels-discovery-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function pkg(dir: string, json: unknown, index?: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), typeof json === 'string' ? json : JSON.stringify(json));
  if (index !== undefined) writeFileSync(join(dir, 'index.js'), index);
}

const manifest = (name: string) => `export default {
  name: '${name}', version: '1.0.0', description: 'test', apiVersion: '>=1.0.0 <2', options: {}, target: 'none',
  schema: { series: {} }, check: async () => ({ status: 'ok', detail: 'fine' }),
  worker: () => ({ argv: ['true'] }), parser: () => ({ line: () => null }) };`;

const nm = join(root, 'path-a', 'node_modules');
pkg(
  join(nm, 'scalpels-plugin-hello'),
  {
    name: 'scalpels-plugin-hello',
    version: '1.2.0',
    type: 'module',
    main: 'index.js',
    scalpels: { apiVersion: '^1.0.0' },
  },
  manifest('hello'),
);
pkg(join(nm, '@acme', 'scalpels-plugin-nfs'), {
  name: '@acme/scalpels-plugin-nfs',
  version: '0.3.0',
  scalpels: { apiVersion: '>=2.0.0' },
});
pkg(join(nm, 'scalpels-plugin-nofield'), { name: 'scalpels-plugin-nofield', version: '1.0.0' });
pkg(join(nm, 'scalpels-plugin-badjson'), '{ not json');
pkg(
  join(nm, 'scalpels-plugin-throws'),
  {
    name: 'scalpels-plugin-throws',
    version: '1.0.0',
    type: 'module',
    main: 'index.js',
    scalpels: { apiVersion: '1.x' },
  },
  'throw new Error("boom at import");',
);
pkg(join(nm, 'lodash'), { name: 'lodash', version: '4.0.0' });
// A plugin package given directly on the path, and a second copy of "hello" elsewhere.
pkg(join(root, 'direct'), {
  name: 'scalpels-plugin-direct',
  version: '0.0.1',
  scalpels: { apiVersion: '^1' },
});
pkg(join(root, 'path-b', 'scalpels-plugin-hello'), {
  name: 'scalpels-plugin-hello',
  version: '2.0.0',
  scalpels: { apiVersion: '^1' },
});

const env = (paths: string[]) => ({ SCALPELS_PLUGIN_PATH: paths.join(':') });

describe('discoverPlugins', () => {
  it('maps package names to tracer names by convention', () => {
    expect(tracerNameOf('@scalpels/plugin-proc')).toBe('proc');
    expect(tracerNameOf('scalpels-plugin-hello')).toBe('hello');
    expect(tracerNameOf('@acme/scalpels-plugin-nfs')).toBe('nfs');
    expect(tracerNameOf('lodash')).toBeUndefined();
  });

  it('finds plugins on SCALPELS_PLUGIN_PATH and says why the bad ones cannot be used', () => {
    const found = discoverPlugins({
      from: [],
      global: false,
      env: env([join(root, 'path-a'), join(root, 'direct')]),
    });
    const by = Object.fromEntries(found.map((p) => [p.name, p]));
    expect(by.hello).toMatchObject({
      package: 'scalpels-plugin-hello',
      version: '1.2.0',
      state: 'ok',
      source: 'SCALPELS_PLUGIN_PATH',
    });
    expect(by.nfs).toMatchObject({
      state: 'incompatible',
      reason: `needs plugin API >=2.0.0; this core provides ${PLUGIN_API_VERSION}`,
    });
    expect(by.nofield).toMatchObject({ state: 'broken' });
    expect(by.nofield!.reason).toMatch(/no "scalpels" field/);
    expect(by.direct).toMatchObject({ state: 'ok', version: '0.0.1' });
    expect(found.find((p) => p.package === 'lodash')).toBeUndefined();
    expect(
      found.find((p) => p.state === 'broken' && /unreadable/.test(p.reason ?? '')),
    ).toBeDefined();
  });

  it('reports two packages of one tracer as a conflict, naming both locations', () => {
    const found = discoverPlugins({
      from: [],
      global: false,
      env: env([join(root, 'path-a'), join(root, 'path-b')]),
    });
    const hellos = found.filter((p) => p.name === 'hello');
    expect(hellos).toHaveLength(2);
    for (const h of hellos) expect(h.state).toBe('conflict');
    expect(hellos.map((h) => h.reason).join(' ')).toContain(
      join(root, 'path-b', 'scalpels-plugin-hello'),
    );
  });

  it('loads a plugin, and turns an import that throws into a one-line error', async () => {
    const reg = new PluginRegistry([], env([join(root, 'path-a')]));
    const hello = await reg.load('hello');
    expect(hello.manifest.name).toBe('hello');
    await expect(reg.load('throws')).rejects.toThrow(
      'tracer "throws" (scalpels-plugin-throws) failed to load: boom at import',
    );
    await expect(reg.load('nfs')).rejects.toThrow(/is incompatible: needs plugin API >=2.0.0/);
    await expect(reg.load('nosuch')).rejects.toThrow(/unknown tracer "nosuch"/);
  });
});
