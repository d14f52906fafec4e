import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { PluginManifest } from './api.js';
import { discoverPlugins, type DiscoveredPlugin } from './discovery.js';
import { UserError, errorMessage } from './errors.js';

export interface LoadedPlugin {
  info: DiscoveredPlugin;
  manifest: PluginManifest;
}

/** Finds plugins (package.json only) and imports one when it is needed. */
export class PluginRegistry {
  private discovered: DiscoveredPlugin[] | undefined;
  private readonly loaded = new Map<string, Promise<LoadedPlugin>>();

  constructor(
    private readonly searchFrom: readonly string[],
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  list(): DiscoveredPlugin[] {
    this.discovered ??= discoverPlugins({ from: this.searchFrom, env: this.env });
    return this.discovered;
  }

  /** Tracer plugins (not bundles) users can name with `-t`. */
  tracerNames(): string[] {
    return [
      ...new Set(
        this.list()
          .filter((p) => !p.bundle)
          .map((p) => p.name),
      ),
    ];
  }

  /** The package that provides a tracer name (the first in search order when several do). */
  find(name: string): DiscoveredPlugin {
    const candidates = this.list()
      .filter((p) => p.name === name && !p.bundle)
      .sort((a, b) => a.precedence - b.precedence);
    const chosen = candidates[0];
    if (!chosen) {
      const known = this.tracerNames().join(', ') || 'none installed';
      throw new UserError(
        `unknown tracer "${name}" (installed: ${known}; see \`scalpels plugins list\`)`,
      );
    }
    if (chosen.state === 'incompatible' || chosen.state === 'broken')
      throw new UserError(
        `tracer "${name}" (${chosen.package}@${chosen.version}) is ${chosen.state}: ${chosen.reason}`,
      );
    return chosen;
  }

  /** Imports a plugin's manifest; an import that throws or a malformed manifest is a clear error. */
  async load(name: string): Promise<LoadedPlugin> {
    let p = this.loaded.get(name);
    if (!p) {
      const info = this.find(name);
      p = importManifest(info).then((manifest) => ({ info, manifest }));
      this.loaded.set(name, p);
    }
    return p;
  }
}

export async function importManifest(info: DiscoveredPlugin): Promise<PluginManifest> {
  const entry = entryPoint(info.dir);
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(entry).href)) as { default?: unknown };
  } catch (e) {
    throw new UserError(
      `tracer "${info.name}" (${info.package}) failed to load: ${firstLine(errorMessage(e))}`,
    );
  }
  const problem = manifestProblem(mod.default);
  if (problem)
    throw new UserError(`tracer "${info.name}" (${info.package}) has a bad manifest: ${problem}`);
  return mod.default as PluginManifest;
}

function entryPoint(dir: string): string {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
    exports?: unknown;
    main?: string;
  };
  const pick = (e: unknown): string | undefined => {
    if (typeof e === 'string') return e;
    if (e && typeof e === 'object') {
      const o = e as Record<string, unknown>;
      return pick(o['.']) ?? pick(o.import) ?? pick(o.default) ?? pick(o.node);
    }
    return undefined;
  };
  const rel = pick(pkg.exports) ?? pkg.main ?? 'index.js';
  const file = join(dir, rel);
  if (!existsSync(file))
    throw new UserError(`plugin at ${dir}: entry point ${rel} is missing (not built?)`);
  return file;
}

function manifestProblem(m: unknown): string | undefined {
  if (!m || typeof m !== 'object') return 'no default export';
  const o = m as Record<string, unknown>;
  for (const k of ['name', 'version', 'apiVersion'] as const)
    if (typeof o[k] !== 'string') return `"${k}" must be a string`;
  for (const k of ['check', 'worker', 'parser'] as const)
    if (typeof o[k] !== 'function') return `"${k}" must be a function`;
  if (!o.options || typeof o.options !== 'object') return '"options" must be an object';
  const schema = o.schema as { series?: unknown } | undefined;
  if (!schema || typeof schema.series !== 'object') return '"schema.series" must be an object';
  if (!['none', 'optional', 'required'].includes(String(o.target)))
    return '"target" must be none, optional or required';
  return undefined;
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}
