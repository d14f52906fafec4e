// Each plugin's manifest, package.json `scalpels` field and README Options/Records tables agree
// (checked by the testing kit's checkPluginConformance, which third-party plugins can run too),
// and the OpenStack bundle's presets name only tracers and options that exist.
import {
  copyFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { PluginManifest } from '@scalpels/core';
import { checkBundleConformance, checkPluginConformance } from '@scalpels/core/testing';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const pluginDirs = readdirSync(join(root, 'plugins')).map((p) => join(root, 'plugins', p));
const bundleDirs = readdirSync(join(root, 'bundles')).map((b) => join(root, 'bundles', b));
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-conformance-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('plugin conformance: manifest, package.json and README agree', () => {
  it.each(pluginDirs.map((d) => [d.split('/').at(-1)!, d]))('%s', async (_name, dir) => {
    expect(await checkPluginConformance(dir)).toEqual([]);
  });

  it('fails when a README option table states another default than the manifest', async () => {
    const dir = join(root, 'plugins', 'proc');
    const readme = join(scratch, 'README.md');
    copyFileSync(join(dir, 'README.md'), readme);
    const text = readFileSync(readme, 'utf8');
    const row = /^\| `interval` +\| duration +\| `1s` +\|/m;
    expect(text).toMatch(row);
    writeFileSync(
      readme,
      text.replace(row, (r) => r.replace('`1s`', '`2s`')),
    );
    expect(await checkPluginConformance(dir, { readme })).toEqual([
      'README options: `interval` default "`2s`"; manifest default `1s`',
    ]);
  });

  it('fails when a README table leaves out an option or a series, or names one that does not exist', async () => {
    const dir = join(root, 'plugins', 'proc');
    const readme = join(scratch, 'README-names.md');
    const text = readFileSync(join(dir, 'README.md'), 'utf8')
      .replace(/^\| `devices` .*\n/m, '')
      .replace('`mem.used`', '`mem.usage`')
      .replace(/^(\| `kernel.load` +\| gauge +\| )count/m, '$1ms   ');
    writeFileSync(readme, text);
    const problems = await checkPluginConformance(dir, { readme });
    expect(problems).toEqual(
      expect.arrayContaining([
        'README options: option `devices` is missing',
        'README records: `mem.usage` is not a series of the schema',
        'README records: series `mem.used` is missing',
        'README records: `kernel.load` unit "ms"; schema unit count',
      ]),
    );
    expect(problems).toHaveLength(4);
  });

  it('reads names from the manifest: an option renamed with its old name as alias (unknown spec fields ignored)', async () => {
    const dir = join(root, 'plugins', 'proc');
    const { default: proc } = (await import(pathToFileURL(join(dir, 'dist', 'index.js')).href)) as {
      default: PluginManifest;
    };
    const { interval, ...rest } = proc.options;
    const renamed = { 'sample-interval': { ...interval, aliases: ['interval'], deprecated: 'x' } };
    const manifest = { ...proc, options: { ...renamed, ...rest } } as PluginManifest;
    expect(await checkPluginConformance(dir, { manifest })).toEqual([
      'README options: `interval` is an alias of `sample-interval`: name the option itself',
    ]);
    const readme = join(scratch, 'README-renamed.md');
    writeFileSync(
      readme,
      readFileSync(join(dir, 'README.md'), 'utf8').replace(
        '| `interval`   |',
        '| `sample-interval` |',
      ),
    );
    expect(await checkPluginConformance(dir, { manifest, readme })).toEqual([]);
  });
});

describe('bundle conformance: presets name existing tracers and options', () => {
  it.each(bundleDirs.map((d) => [d.split('/').at(-1)!, d]))('%s', async (_name, dir) => {
    const manifests = new Map<string, PluginManifest>();
    for (const p of pluginDirs) {
      const m = (await import(pathToFileURL(join(p, 'dist', 'index.js')).href)) as {
        default: PluginManifest;
      };
      manifests.set(m.default.name, m.default);
    }
    expect(checkBundleConformance(dir, manifests)).toEqual([]);
  });
});
