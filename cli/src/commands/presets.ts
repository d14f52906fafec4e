import type { DiscoveredPlugin, PluginRegistry } from '@scalpels/core/plugins';
import { cliDir, paint, type GlobalArgs } from '../context.js';

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

export async function presetRegistry(): Promise<PluginRegistry> {
  const { PluginRegistry } = await import('@scalpels/core/plugins');
  return new PluginRegistry([cliDir]);
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

/** A preset by name; `BUNDLE/NAME` picks one when two bundles offer the same name. */
export async function findPreset(reg: PluginRegistry, name: string): Promise<Preset> {
  const { UserError } = await import('@scalpels/core');
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
  throw new UserError(
    `unknown preset "${name}" (installed: ${known}; npm i -g @scalpels/bundle-openstack adds the OpenStack ones)${broken}`,
  );
}

export interface ServiceMatch {
  service: PresetService;
  /** The first `match` name that matches something here, or undefined when none does. */
  found?: string;
  pids: number[];
}

/** Which of a preset's services run here (process name, executable or script, systemd unit). */
export async function matchServices(services: readonly PresetService[]): Promise<ServiceMatch[]> {
  const { TargetResolver } = await import('@scalpels/core/engine');
  const resolver = new TargetResolver();
  return services.map((service) => {
    for (const m of service.match) {
      const pids = resolver.matchService(m);
      if (pids.length > 0) return { service, found: m, pids };
    }
    return { service, pids: [] };
  });
}

export interface PresetArgs {
  preset?: string;
  tracer?: string[];
  set?: string[];
  service?: string[];
  pid?: number[];
  /** Cluster mode (`--redis`): services live on other nodes. */
  redis?: string;
}

export interface ExpandedPreset {
  tracer: string[];
  set: string[];
  service?: string[];
  /** Said on stderr: tracers left out, services not found. */
  notes: string[];
}

/**
 * Turns `--preset NAME` into tracers, settings (the preset's options first, so `--set` given by
 * the user overrides them) and, for `start`, services. For `run` the target is the command.
 */
export async function expandPreset(
  args: PresetArgs,
  mode: 'run' | 'start',
  reg?: PluginRegistry,
): Promise<ExpandedPreset> {
  const { UserError, validateOptions } = await import('@scalpels/core');
  const { checkContext } = await import('@scalpels/core/plugins');
  const registry = reg ?? (await presetRegistry());
  const preset = await findPreset(registry, args.preset!);
  const explicit = new Set(
    (args.tracer ?? [])
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
    tracer: [allTracers.join(',')],
    set: [...settings, ...(args.set ?? [])],
    notes,
  };
  if (preset.services.length === 0) return out;
  if (mode === 'run') {
    notes.push(
      `run traces the command; the preset's services (${preset.services.map((s) => s.name).join(', ')}) are traced by scalpels start --preset ${preset.name}`,
    );
    return out;
  }
  if (args.service?.length || args.pid?.length) {
    notes.push('--service/--pid given: they replace the preset\u2019s services');
    return out;
  }
  if (args.redis ?? process.env.SCALPELS_REDIS) {
    notes.push(
      `with --redis its services (${preset.services.map((s) => s.name).join(', ')}) are not looked up (they run on the nodes, not here): give --service for them, else the tracers run system-wide`,
    );
    return out;
  }
  const matches = await matchServices(preset.services);
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
  out.service = found.map((m) => m.found!);
  return out;
}

/** Applies `--preset` to run/start arguments in place; says on stderr what it left out. */
export async function applyPreset<T extends PresetArgs>(
  args: T,
  mode: 'run' | 'start',
): Promise<T> {
  if (!args.preset) {
    if (!args.tracer?.length) {
      const { UserError } = await import('@scalpels/core');
      throw new UserError(`${mode}: give tracers with -t NAME[,NAME..] or a --preset`);
    }
    return args;
  }
  const x = await expandPreset(args, mode);
  for (const n of x.notes) process.stderr.write(`scalpels: preset ${args.preset}: ${n}\n`);
  return { ...args, tracer: x.tracer, set: x.set, ...(x.service ? { service: x.service } : {}) };
}

interface PresetsArgs extends GlobalArgs {
  name?: string;
}

/** `scalpels presets [NAME]`: the presets of installed bundles, and which services run here. */
export async function presetsCommand(args: PresetsArgs): Promise<number> {
  const { table } = await import('@scalpels/core');
  const reg = await presetRegistry();
  const catalog = presetCatalog(reg);
  const presets = args.name ? [await findPreset(reg, args.name)] : catalog.presets;
  const installed = new Set(reg.tracerNames());
  const rows = await Promise.all(
    presets.map(async (p) => ({
      ...p,
      tracers: p.tracers.map((t) => ({ ...t, installed: installed.has(t.name) })),
      services: (await matchServices(p.services)).map((m) => ({
        ...m.service,
        running: m.found ?? null,
        pids: m.pids,
      })),
    })),
  );
  if (args.json) {
    process.stdout.write(
      `${JSON.stringify(args.name ? rows[0] : { presets: rows, problems: catalog.problems }, null, 2)}\n`,
    );
    return 0;
  }
  for (const p of catalog.problems) process.stderr.write(`scalpels: unusable bundle: ${p}\n`);
  if (rows.length === 0) {
    process.stdout.write(
      'no presets installed (npm i -g @scalpels/bundle-openstack, or a bundle on SCALPELS_PLUGIN_PATH)\n',
    );
    return 0;
  }
  const tracerList = (r: (typeof rows)[number]): string =>
    r.tracers.map((t) => `${t.name}${t.optional ? '?' : ''}${t.installed ? '' : '!'}`).join(',');
  const runningCount = (r: (typeof rows)[number]): string =>
    r.services.length ? `${r.services.filter((s) => s.running).length}/${r.services.length}` : '-';
  if (!args.name) {
    process.stdout.write(
      `${table(
        ['PRESET', 'BUNDLE', 'TRACERS', 'SERVICES RUNNING HERE', 'DESCRIPTION'],
        rows.map((r) => [
          r.name,
          `${r.bundle.package}@${r.bundle.version}`,
          tracerList(r),
          runningCount(r),
          r.description,
        ]),
      )}\n(tracer? optional, tracer! not installed; details: scalpels presets NAME)\n`,
    );
    return 0;
  }
  const r = rows[0]!;
  const out = [
    `${paint(r.name, 'bold')} — ${r.description}`,
    `bundle ${r.bundle.package}@${r.bundle.version} (${r.bundle.dir})`,
    '',
    'tracers:',
    ...r.tracers.map(
      (t) =>
        `  ${t.name}${t.optional ? ' (optional)' : ''}${t.installed ? '' : ' — not installed'}${
          Object.keys(t.options).length
            ? `: ${Object.entries(t.options)
                .map(([k, v]) => `${k}=${v}`)
                .join(' ')}`
            : ''
        }`,
    ),
    '',
    'services:',
    ...r.services.map(
      (s) =>
        `  ${s.name}: ${s.running ? `running (${s.running}: pid ${s.pids.join(', ')})` : 'not found here'} — matched by ${s.match.join(', ')}`,
    ),
    '',
    `scalpels start --preset ${r.name}   (or: scalpels run --preset ${r.name} -- CMD)`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}
