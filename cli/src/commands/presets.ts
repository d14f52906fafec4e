import type { PluginRegistry } from '@scalpels/core/plugins';
import { cliDir, paint, type GlobalArgs } from '../context.js';

/** Where the OpenStack presets come from, said when a preset name is unknown. */
const INSTALL_HINT = 'npm i -g @scalpels/bundle-openstack adds the OpenStack ones';

export async function presetRegistry(): Promise<PluginRegistry> {
  const { PluginRegistry } = await import('@scalpels/core/plugins');
  return new PluginRegistry([cliDir]);
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
  const { expandPreset } = await import('@scalpels/core/plugins');
  const x = await expandPreset(
    await presetRegistry(),
    {
      preset: args.preset,
      tracers: args.tracer,
      settings: args.set,
      services: args.service,
      pids: args.pid,
      cluster: Boolean(args.redis ?? process.env.SCALPELS_REDIS),
    },
    mode,
    INSTALL_HINT,
  );
  for (const n of x.notes) process.stderr.write(`scalpels: preset ${args.preset}: ${n}\n`);
  return {
    ...args,
    tracer: [x.tracers.join(',')],
    set: x.settings,
    ...(x.services ? { service: x.services } : {}),
  };
}

interface PresetsArgs extends GlobalArgs {
  name?: string;
}

/** `scalpels presets [NAME]`: the presets of installed bundles, and which services run here. */
export async function presetsCommand(args: PresetsArgs): Promise<number> {
  const { table } = await import('@scalpels/core');
  const { presetCatalog, findPreset, matchServices } = await import('@scalpels/core/plugins');
  const reg = await presetRegistry();
  const catalog = presetCatalog(reg);
  const presets = args.name ? [findPreset(reg, args.name, INSTALL_HINT)] : catalog.presets;
  const installed = new Set(reg.tracerNames());
  const rows = presets.map((p) => ({
    ...p,
    tracers: p.tracers.map((t) => ({ ...t, installed: installed.has(t.name) })),
    services: matchServices(p.services).map((m) => ({
      ...m.service,
      running: m.found ?? null,
      pids: m.pids,
    })),
  }));
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
