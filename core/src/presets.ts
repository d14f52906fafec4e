import type { DiscoveredPlugin } from './discovery.js';
import { checkContext } from './check-context.js';
import { UserError } from './errors.js';
import { validateOptions } from './options.js';
import type { PluginRegistry } from './registry.js';
import { TargetResolver } from './targets.js';

/**
 * Presets come from bundles: packages named like plugins (`@scalpels/bundle-NAME`,
 * `scalpels-bundle-NAME`, `@scope/scalpels-bundle-NAME`) whose package.json has
 * `"scalpels": {"apiVersion": "...", "bundle": {"presets": {NAME: PRESET}}}` with
 *   PRESET = { "description": "...",
 *              "tracers": { TRACER: { "options": {KEY: VALUE}, "optional": true } },
 *              "services": [ { "name": "nova-api", "match": ["nova-api", "devstack@n-api.service"] } ] }
 * A service is found by the first of its `match` names that matches a running process (name,
 * executable or script) or systemd unit, like `--service`. An optional tracer is left out, with a
 * note, when it is not installed or cannot run here.
 */
export interface PresetTracer {
  name: string;
  options: Record<string, string>;
  optional: boolean;
}

export interface PresetService {
  name: string;
  match: string[];
}

export interface Preset {
  name: string;
  description: string;
  bundle: { name: string; package: string; version: string; dir: string };
  tracers: PresetTracer[];
  services: PresetService[];
}

export interface PresetCatalog {
  presets: Preset[];
  /** Bundles whose `bundle` field is malformed, with why. */
  problems: string[];
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function optionText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(',');
  return undefined;
}

/** Reads one bundle's presets; throws a one-line message naming what is wrong. */
export function parseBundle(p: DiscoveredPlugin): Preset[] {
  const bundle = p.bundle;
  if (!isObject(bundle) || !isObject(bundle.presets))
    throw new Error('"scalpels.bundle.presets" must be an object of presets');
  return Object.entries(bundle.presets).map(([name, raw]) => {
    const where = `preset "${name}"`;
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw new Error(`${where}: bad preset name`);
    if (!isObject(raw)) throw new Error(`${where} must be an object`);
    if (!isObject(raw.tracers) || Object.keys(raw.tracers).length === 0)
      throw new Error(`${where}: "tracers" must name at least one tracer`);
    const tracers = Object.entries(raw.tracers).map(([tracer, t]): PresetTracer => {
      if (t !== true && !isObject(t))
        throw new Error(`${where}: tracer "${tracer}" must be an object`);
      const spec = isObject(t) ? t : {};
      if (spec.options !== undefined && !isObject(spec.options))
        throw new Error(`${where}: "${tracer}.options" must be an object`);
      const options: Record<string, string> = {};
      for (const [k, v] of Object.entries(spec.options ?? {})) {
        const text = optionText(v);
        if (text === undefined)
          throw new Error(`${where}: option ${tracer}.${k} must be a string, number or boolean`);
        options[k] = text;
      }
      return { name: tracer, options, optional: spec.optional === true };
    });
    const rawServices = raw.services ?? [];
    if (!Array.isArray(rawServices)) throw new Error(`${where}: "services" must be a list`);
    const services = rawServices.map((s: unknown): PresetService => {
      if (typeof s === 'string') return { name: s, match: [s] };
      if (
        !isObject(s) ||
        typeof s.name !== 'string' ||
        (s.match !== undefined &&
          (!Array.isArray(s.match) || !s.match.every((m) => typeof m === 'string' && m)))
      )
        throw new Error(`${where}: a service must be a name or {"name", "match": [names]}`);
      return { name: s.name, match: (s.match as string[] | undefined) ?? [s.name] };
    });
    return {
      name,
      description: typeof raw.description === 'string' ? raw.description : '',
      bundle: { name: p.name, package: p.package, version: p.version, dir: p.dir },
      tracers,
      services,
    };
  });
}

/** Every preset of every usable bundle. */
export function presetCatalog(reg: PluginRegistry): PresetCatalog {
  const out: PresetCatalog = { presets: [], problems: [] };
  for (const p of reg.list().filter((x) => x.bundle !== undefined)) {
    if (p.state === 'incompatible' || p.state === 'broken') {
      out.problems.push(`${p.package}@${p.version} (${p.dir}): ${p.state}: ${p.reason ?? ''}`);
      continue;
    }
    try {
      out.presets.push(...parseBundle(p));
    } catch (e) {
      out.problems.push(`${p.package}@${p.version} (${p.dir}): ${(e as Error).message}`);
    }
  }
  out.presets.sort((a, b) => a.name.localeCompare(b.name));
  return out;
}

/** Said after the installed presets when a name is unknown; front ends say where theirs come from. */
const DEFAULT_INSTALL_HINT = 'a bundle package adds presets';

/**
 * A preset by name; `BUNDLE/NAME` picks one when two bundles offer the same name. An unknown
 * name is refused with the installed presets, `installHint` and the unusable bundles.
 */
export function findPreset(
  reg: PluginRegistry,
  name: string,
  installHint = DEFAULT_INSTALL_HINT,
): Preset {
  const catalog = presetCatalog(reg);
  const slash = name.indexOf('/', name.startsWith('@') ? name.indexOf('/') + 1 : 0);
  const [bundle, preset] =
    slash > 0 ? [name.slice(0, slash), name.slice(slash + 1)] : [undefined, name];
  const matches = catalog.presets.filter(
    (p) =>
      p.name === preset &&
      (bundle === undefined || p.bundle.name === bundle || p.bundle.package === bundle),
  );
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1)
    throw new UserError(
      `preset "${name}" is offered by ${matches.map((p) => `${p.bundle.package}@${p.bundle.version}`).join(' and ')}: write BUNDLE/${preset}`,
    );
  const known = catalog.presets.map((p) => p.name).join(', ') || 'none installed';
  const broken = catalog.problems.length
    ? `; unusable bundles: ${catalog.problems.join('; ')}`
    : '';
  throw new UserError(`unknown preset "${name}" (installed: ${known}; ${installHint})${broken}`);
}

export interface ServiceMatch {
  service: PresetService;
  /** The first `match` name that matches something here, or undefined when none does. */
  found?: string;
  pids: number[];
}

/** Which of a preset's services run here (process name, executable or script, systemd unit). */
export function matchServices(services: readonly PresetService[]): ServiceMatch[] {
  const resolver = new TargetResolver();
  return services.map((service) => {
    for (const m of service.match) {
      const pids = resolver.matchService(m);
      if (pids.length > 0) return { service, found: m, pids };
    }
    return { service, pids: [] };
  });
}

export interface PresetRequest {
  preset: string;
  /** Tracers asked for beside the preset (`-t`; comma lists allowed): never left out. */
  tracers?: readonly string[];
  /** `TRACER.KEY=VALUE` settings of the user: they come after the preset's, so they win. */
  settings?: readonly string[];
  /** Targets given by the user: they replace the preset's services. */
  services?: readonly string[];
  pids?: readonly number[];
  /** Cluster mode: the services run on the nodes, so they are not looked up here. */
  cluster?: boolean;
}

export interface ExpandedPreset {
  /** Tracer names: the preset's that can run here, then the ones asked for beside it. */
  tracers: string[];
  /** `TRACER.KEY=VALUE`: the preset's options, then the user's settings. */
  settings: string[];
  /** For `start`: the services found here (the first matching name of each). */
  services?: string[];
  /** What to tell the user: tracers left out, services not found. */
  notes: string[];
}

/**
 * Turns a preset into tracers, settings (the preset's options first, so settings given by the
 * user override them) and, for `start`, the services that run here. For `run` the target is the
 * command. An optional tracer is left out, with a note, when it is not installed or its check
 * fails here.
 */
export async function expandPreset(
  registry: PluginRegistry,
  req: PresetRequest,
  mode: 'run' | 'start',
  installHint = DEFAULT_INSTALL_HINT,
): Promise<ExpandedPreset> {
  const preset = findPreset(registry, req.preset, installHint);
  const explicit = new Set(
    (req.tracers ?? [])
      .flatMap((t) => t.split(','))
      .map((t) => t.trim())
      .filter(Boolean),
  );
  const notes: string[] = [];
  const tracers: string[] = [];
  const settings: string[] = [];
  for (const t of preset.tracers) {
    if (t.optional && !explicit.has(t.name)) {
      let why: string | undefined;
      if (!registry.tracerNames().includes(t.name))
        why = `not installed (npm i -g scalpels-plugin-${t.name} or @scalpels/plugin-${t.name})`;
      else
        try {
          const { manifest } = await registry.load(t.name);
          const options = validateOptions(manifest, t.options);
          const r = await manifest.check(checkContext(options, 'full'));
          if (r.status !== 'ok') why = `${r.detail}${r.hint ? ` (fix: ${r.hint})` : ''}`;
        } catch (e) {
          why = (e as Error).message.split('\n')[0];
        }
      if (why) {
        notes.push(`optional tracer ${t.name} left out: ${why}`);
        continue;
      }
    }
    tracers.push(t.name);
    for (const [k, v] of Object.entries(t.options)) settings.push(`${t.name}.${k}=${v}`);
  }
  const allTracers = [...tracers, ...[...explicit].filter((t) => !tracers.includes(t))];
  const out: ExpandedPreset = {
    tracers: allTracers,
    settings: [...settings, ...(req.settings ?? [])],
    notes,
  };
  if (preset.services.length === 0) return out;
  if (mode === 'run') {
    notes.push(
      `run traces the command; the preset's services (${preset.services.map((s) => s.name).join(', ')}) are traced by scalpels start --preset ${preset.name}`,
    );
    return out;
  }
  if (req.services?.length || req.pids?.length) {
    notes.push('--service/--pid given: they replace the preset\u2019s services');
    return out;
  }
  if (req.cluster) {
    notes.push(
      `with --redis its services (${preset.services.map((s) => s.name).join(', ')}) are not looked up (they run on the nodes, not here): give --service for them, else the tracers run system-wide`,
    );
    return out;
  }
  const matches = matchServices(preset.services);
  const missing = matches.filter((m) => !m.found).map((m) => m.service.name);
  const found = matches.filter((m) => m.found);
  if (found.length === 0)
    throw new UserError(
      `preset ${preset.name}: none of its services runs here: not found: ${missing.join(', ')} (looked for ${preset.services.map((s) => s.match.join('|')).join(', ')}); give --service or --pid to trace others`,
    );
  if (missing.length > 0)
    notes.push(
      `services not found (not traced): ${missing.join(', ')}; traced: ${found.map((m) => `${m.service.name} (${m.found})`).join(', ')}`,
    );
  out.services = found.map((m) => m.found!);
  return out;
}
