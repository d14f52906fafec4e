import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { basename, delimiter, dirname, join } from 'node:path';
import satisfies from 'semver/functions/satisfies.js';
import validRange from 'semver/ranges/valid.js';
import { PLUGIN_API_VERSION } from './api.js';
import type { StaticRequires } from './static-check.js';

/** What discovery knows of a plugin package from its package.json alone (nothing imported). */
export interface DiscoveredPlugin {
  /** Tracer name users type (`proc`, `syscalls`). */
  name: string;
  package: string;
  version: string;
  description: string;
  /** Package folder (real path). */
  dir: string;
  /** Where it was found: `installation`, `global`, or `SCALPELS_PLUGIN_PATH`. */
  source: string;
  apiRange: string;
  /** `ok`: can be loaded. `incompatible`: API range excludes this core. `broken`: unusable package. `conflict`: same name elsewhere. */
  state: 'ok' | 'incompatible' | 'broken' | 'conflict';
  reason?: string;
  /** Present for bundle packages (presets), which have no tracer of their own. */
  bundle?: unknown;
  /** Search order (lower wins when several packages offer one name). */
  precedence: number;
  /** Requirements declared in package.json (`scalpels.requires`), checked without importing. */
  requires?: StaticRequires;
}

const OFFICIAL = /^@scalpels\/plugin-(.+)$/;
const THIRD_PARTY = /^(?:@[^/]+\/)?scalpels-plugin-(.+)$/;
const BUNDLE = /^(?:@scalpels\/bundle-|(?:@[^/]+\/)?scalpels-bundle-)(.+)$/;

/** The tracer name a package name stands for, or undefined when it is not a plugin's name. */
export function tracerNameOf(packageName: string): string | undefined {
  return (
    OFFICIAL.exec(packageName)?.[1] ??
    THIRD_PARTY.exec(packageName)?.[1] ??
    BUNDLE.exec(packageName)?.[1]
  );
}

export interface DiscoveryOptions {
  /** Folders to start from; every `node_modules` above each is searched (the installation). */
  from: readonly string[];
  /** Also search the global npm prefix. Default true. */
  global?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** Global npm `node_modules`: `$npm_config_prefix/lib/node_modules` or beside the running node. */
export function globalNodeModules(env: NodeJS.ProcessEnv = process.env): string {
  const prefix =
    env.npm_config_prefix ?? env.NPM_CONFIG_PREFIX ?? dirname(dirname(process.execPath));
  return join(prefix, 'lib', 'node_modules');
}

/**
 * Finds plugin packages by naming convention in the installation's node_modules (walking up from
 * `from`), the global prefix and the folders of `SCALPELS_PLUGIN_PATH`. Reads package.json only.
 */
export function discoverPlugins(opts: DiscoveryOptions): DiscoveredPlugin[] {
  const env = opts.env ?? process.env;
  const roots: { dir: string; source: string }[] = [];
  for (const p of (env.SCALPELS_PLUGIN_PATH ?? '').split(delimiter).filter(Boolean))
    roots.push({ dir: p, source: 'SCALPELS_PLUGIN_PATH' });
  for (const start of opts.from) {
    for (let d = start; ; d = dirname(d)) {
      roots.push({ dir: join(d, 'node_modules'), source: 'installation' });
      if (dirname(d) === d) break;
    }
  }
  if (opts.global !== false) roots.push({ dir: globalNodeModules(env), source: 'global' });

  const found: DiscoveredPlugin[] = [];
  const seenDirs = new Set<string>();
  let order = 0;
  const visit = (pkgDir: string, source: string): void => {
    let real: string;
    try {
      real = realpathSync(pkgDir);
    } catch {
      return;
    }
    if (seenDirs.has(real)) return;
    seenDirs.add(real);
    const plugin = readPlugin(real, source);
    if (plugin) found.push({ ...plugin, precedence: order++ });
  };
  for (const { dir, source } of roots) {
    if (!existsSync(dir)) continue;
    // A SCALPELS_PLUGIN_PATH entry may be a plugin package itself, a folder of packages, or a project.
    if (source === 'SCALPELS_PLUGIN_PATH' && existsSync(join(dir, 'package.json')))
      visit(dir, source);
    const scan = (d: string): void => {
      for (const entry of safeReaddir(d)) {
        if (entry.startsWith('@')) {
          for (const sub of safeReaddir(join(d, entry))) {
            if (tracerNameOf(`${entry}/${sub}`)) visit(join(d, entry, sub), source);
          }
        } else if (tracerNameOf(entry)) visit(join(d, entry), source);
        // A folder of checkouts (`~/src/hello`, `bundles/openstack`): their package.json names them.
        else if (
          source === 'SCALPELS_PLUGIN_PATH' &&
          d === dir &&
          existsSync(join(d, entry, 'package.json'))
        )
          visit(join(d, entry), source);
      }
    };
    scan(dir);
    if (source === 'SCALPELS_PLUGIN_PATH' && existsSync(join(dir, 'node_modules')))
      scan(join(dir, 'node_modules'));
  }
  markConflicts(found);
  return found.sort((a, b) => a.name.localeCompare(b.name) || a.dir.localeCompare(b.dir));
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function readPlugin(dir: string, source: string): DiscoveredPlugin | undefined {
  const base: DiscoveredPlugin = {
    name: basename(dir),
    package: basename(dir),
    version: '?',
    description: '',
    dir,
    source,
    apiRange: '?',
    state: 'broken',
    precedence: 0,
  };
  let pkg: Record<string, unknown>;
  try {
    pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;
  } catch (e) {
    return { ...base, reason: `package.json unreadable: ${(e as Error).message}` };
  }
  const pkgName = typeof pkg.name === 'string' ? pkg.name : base.package;
  const name = tracerNameOf(pkgName);
  if (!name) return undefined; // A folder on SCALPELS_PLUGIN_PATH that is not a plugin.
  const meta = (pkg.scalpels ?? undefined) as
    { apiVersion?: unknown; name?: unknown; bundle?: unknown; requires?: unknown } | undefined;
  const plugin: DiscoveredPlugin = {
    ...base,
    name: typeof meta?.name === 'string' ? meta.name : name,
    package: pkgName,
    version: typeof pkg.version === 'string' ? pkg.version : '?',
    description: typeof pkg.description === 'string' ? pkg.description : '',
    bundle: meta?.bundle,
    requires:
      meta?.requires && typeof meta.requires === 'object'
        ? (meta.requires as StaticRequires)
        : undefined,
  };
  if (!meta || typeof meta !== 'object')
    return {
      ...plugin,
      reason: 'package.json has no "scalpels" field (needs at least "apiVersion")',
    };
  if (typeof meta.apiVersion !== 'string' || !validRange(meta.apiVersion))
    return {
      ...plugin,
      reason: `"scalpels.apiVersion" is not a semver range: ${JSON.stringify(meta.apiVersion)}`,
    };
  plugin.apiRange = meta.apiVersion;
  if (!satisfies(PLUGIN_API_VERSION, meta.apiVersion))
    return {
      ...plugin,
      state: 'incompatible',
      reason: `needs plugin API ${meta.apiVersion}; this core provides ${PLUGIN_API_VERSION}`,
    };
  return { ...plugin, state: 'ok' };
}

/** Two packages offering one tracer name: which one would run is ambiguous, so both are flagged. */
function markConflicts(found: DiscoveredPlugin[]): void {
  const byName = new Map<string, DiscoveredPlugin[]>();
  for (const p of found) byName.set(p.name, [...(byName.get(p.name) ?? []), p]);
  for (const [, list] of byName) {
    if (list.length < 2) continue;
    for (const p of list) {
      const others = list
        .filter((o) => o !== p)
        .map((o) => `${o.package}@${o.version} at ${o.dir}`);
      p.state = 'conflict';
      p.reason = `also provided by ${others.join(', ')}`;
    }
  }
}
