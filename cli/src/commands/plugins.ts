import type { CheckResult, PluginManifest } from '@scalpels/core';
import type { DiscoveredPlugin } from '@scalpels/core/plugins';
import { cliDir, paint, statusColor, type GlobalArgs } from '../context.js';
import { table } from '@scalpels/core';

interface PluginArgs extends GlobalArgs {
  action: 'list' | 'info' | 'validate';
  name?: string;
  settings?: string[];
  check?: boolean;
}

interface PluginStatus {
  name: string;
  package: string;
  version: string;
  description: string;
  apiVersion: string;
  compatible: boolean;
  source: string;
  dir: string;
  status: 'ok' | 'fixable' | 'unavailable' | 'incompatible' | 'broken' | 'conflict' | 'unchecked';
  detail: string;
  hint?: string;
  technique?: string;
  bundle: boolean;
}

async function registry() {
  const { PluginRegistry } = await import('@scalpels/core/plugins');
  return new PluginRegistry([cliDir]);
}

const CHECK_TIMEOUT_MS = { quick: 2000, full: 20_000 };

/** Imports a plugin and runs its check under a timeout; any failure becomes a status, never a crash. */
async function statusOf(
  p: DiscoveredPlugin,
  depth: 'quick' | 'full',
  runCheck: boolean,
): Promise<PluginStatus> {
  const base = {
    name: p.name,
    package: p.package,
    version: p.version,
    description: p.description,
    apiVersion: p.apiRange,
    compatible: p.state !== 'incompatible' && p.state !== 'broken',
    source: p.source,
    dir: p.dir,
    bundle: p.bundle !== undefined,
  };
  if (p.state === 'incompatible' || p.state === 'broken')
    return { ...base, status: p.state, detail: p.reason ?? '' };
  if (p.bundle !== undefined) return { ...base, status: 'ok', detail: 'bundle of presets' };
  const conflict = p.state === 'conflict' ? ` (conflict: ${p.reason})` : '';
  if (!runCheck)
    return {
      ...base,
      status: p.state === 'conflict' ? 'conflict' : 'unchecked',
      detail: conflict.trim(),
    };
  const { importManifest, checkContext, staticCheck, defaultOptions } =
    await import('@scalpels/core/plugins');
  // A quick look at a plugin that declares its requirements in package.json needs no import.
  if (depth === 'quick' && p.requires) {
    const r = staticCheck(p.requires);
    if (p.state === 'conflict')
      return { ...base, status: 'conflict', detail: `${r.detail}${conflict}`, hint: r.hint };
    return { ...base, status: r.status, detail: r.detail, hint: r.hint, technique: r.technique };
  }
  let manifest: PluginManifest;
  try {
    manifest = await importManifest(p);
  } catch (e) {
    return { ...base, compatible: false, status: 'broken', detail: (e as Error).message };
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    const r: CheckResult = await Promise.race([
      manifest.check(checkContext(defaultOptions(manifest), depth, p.dir)),
      new Promise<CheckResult>((resolve) => {
        timer = setTimeout(
          () =>
            resolve({
              status: 'unavailable',
              detail: `check did not answer within ${CHECK_TIMEOUT_MS[depth]} ms`,
            }),
          CHECK_TIMEOUT_MS[depth],
        );
      }),
    ]);
    if (p.state === 'conflict')
      return { ...base, status: 'conflict', detail: `${r.detail}${conflict}`, hint: r.hint };
    return { ...base, status: r.status, detail: r.detail, hint: r.hint, technique: r.technique };
  } catch (e) {
    return {
      ...base,
      status: 'broken',
      detail: `check threw: ${(e as Error).message.split('\n')[0]}`,
    };
  } finally {
    clearTimeout(timer);
  }
}

function statusText(s: PluginStatus): string {
  const hint = s.hint ? ` — fix: ${s.hint}` : '';
  return s.status === 'ok'
    ? `ok${s.technique ? ` (${s.technique})` : ''}`
    : `${s.status}: ${s.detail}${hint}`;
}

export async function pluginsCommand(args: PluginArgs): Promise<number> {
  const reg = await registry();
  if (args.action === 'list') {
    const statuses = await Promise.all(
      reg.list().map((p) => statusOf(p, 'quick', args.check !== false)),
    );
    if (args.json) {
      process.stdout.write(`${JSON.stringify(statuses, null, 2)}\n`);
      return 0;
    }
    if (statuses.length === 0) {
      process.stdout.write(
        'no plugins installed (npm i @scalpels/plugin-proc, or set SCALPELS_PLUGIN_PATH)\n',
      );
      return 0;
    }
    const rows = statuses.map((s) => [
      s.name,
      s.package,
      s.version,
      s.apiVersion,
      s.source,
      statusText(s),
    ]);
    const text = table(['NAME', 'PACKAGE', 'VERSION', 'API', 'FROM', 'STATUS'], rows);
    const [head, ...lines] = text.split('\n');
    process.stdout.write(`${paint(head!, 'bold')}\n`);
    lines.forEach((line, i) => {
      const s = statuses[i]!;
      process.stdout.write(
        `${line.replace(statusText(s), paint(statusText(s), statusColor(s.status)))}\n`,
      );
    });
    return 0;
  }

  const { UserError } = await import('@scalpels/core');
  if (!args.name) throw new UserError(`plugins ${args.action}: give a plugin name`);
  const { manifest, info } = await reg.load(args.name);

  if (args.action === 'validate') {
    const { validateOptions, parseSetting } = await import('@scalpels/core');
    const { checkContext } = await import('@scalpels/core/plugins');
    const raw: Record<string, string> = {};
    for (const s of args.settings ?? []) {
      const { key, value } = parseSetting(
        s.includes('.') && s.indexOf('.') < s.indexOf('=') ? s : `${args.name}.${s}`,
      );
      raw[key] = value;
    }
    // Validation translates and compiles as far as the machine allows but never loads or runs a
    // script, so user scripts and guru mode are accepted here (still only from trusted files).
    const policy = { allowScripts: true, allowGuru: true };
    const options = validateOptions(manifest, raw, policy);
    if (!manifest.verify) {
      process.stdout.write(`${info.name}: options valid (this plugin has no deeper validation)\n`);
      return 0;
    }
    const stages = await manifest.verify(options, checkContext(options, 'full', info.dir, policy));
    if (args.json) process.stdout.write(`${JSON.stringify(stages, null, 2)}\n`);
    else
      process.stdout.write(
        `${table(
          ['STAGE', 'RESULT', 'DETAIL'],
          stages.map((s) => [s.stage, s.status, s.detail]),
        )}\n`,
      );
    return stages.some((s) => s.status === 'failed') ? 1 : 0;
  }

  // info
  const status = await statusOf(info, 'full', true);
  if (args.json) {
    const jsonable = {
      ...status,
      options: Object.fromEntries(
        Object.entries(manifest.options).map(([k, o]) => [
          k,
          { ...o, pattern: 'pattern' in o ? String(o.pattern) : undefined },
        ]),
      ),
      requires: manifest.requires ?? [],
      target: manifest.target,
      techniques: (manifest.techniques ?? []).map((t) => ({
        name: t.name,
        description: t.description,
      })),
      schema: manifest.schema,
    };
    process.stdout.write(`${JSON.stringify(jsonable, null, 2)}\n`);
    return 0;
  }
  const out: string[] = [];
  out.push(`${paint(info.name, 'bold')} — ${manifest.description}`);
  out.push(`package ${info.package}@${info.version} (${info.dir}), plugin API ${info.apiRange}`);
  out.push(`status here: ${statusText(status)}`);
  out.push(
    `target: ${{ none: 'system-wide only', optional: 'a process tree (--pid/--service/run) or system-wide', required: 'a process tree (--pid/--service/run)' }[manifest.target]}`,
  );
  if (manifest.techniques?.length) {
    out.push('', 'techniques (first that works here is used):');
    for (const t of manifest.techniques) out.push(`  ${t.name}: ${t.description}`);
  }
  out.push('', 'options (--set ' + info.name + '.KEY=VALUE):');
  const optRows = Object.entries(manifest.options).map(([k, o]) => [
    k,
    o.type,
    'default' in o && o.default !== undefined ? String(o.default) : o.required ? '(required)' : '-',
    o.unit ?? '',
    // A renamed option still takes its former name for a release: say so where users look it up.
    o.aliases?.length
      ? `${o.description} (formerly ${o.aliases.join(', ')}: deprecated)`
      : o.description,
  ]);
  out.push(
    optRows.length
      ? indent(table(['OPTION', 'TYPE', 'DEFAULT', 'UNIT', 'DESCRIPTION'], optRows))
      : '  none',
  );
  if (manifest.requires?.length) {
    out.push('', 'requires:');
    for (const r of manifest.requires)
      out.push(`  ${r.kind}: ${r.what}${r.why ? ` — ${r.why}` : ''}`);
  }
  out.push('', 'series:');
  out.push(
    indent(
      table(
        ['SERIES', 'KIND', 'UNIT', 'LABELS', 'DESCRIPTION'],
        Object.entries(manifest.schema.series).map(([n, s]) => [
          n,
          s.kind,
          s.unit,
          (s.labels ?? []).join(',') || '-',
          s.description,
        ]),
      ),
    ),
  );
  const events = Object.entries(manifest.schema.events ?? {});
  if (events.length) {
    out.push('', 'events:');
    out.push(
      indent(
        table(
          ['EVENT', 'KEY', 'DESCRIPTION'],
          events.map(([n, e]) => [n, e.key, e.description]),
        ),
      ),
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

export async function doctorCommand(
  args: GlobalArgs & { agent?: string; tokenFile?: string },
): Promise<number> {
  const reg = await registry();
  const statuses = await Promise.all(reg.list().map((p) => statusOf(p, 'full', true)));
  const { agentHealth } = await import('./agent.js');
  const agent = await agentHealth(args);
  if (args.json) {
    process.stdout.write(`${JSON.stringify({ agent, plugins: statuses }, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(
    `${paint(`${agent.ok ? '✓' : '!'} agent`, agent.ok ? 'green' : 'yellow')}: ${agent.detail}\n${agent.hint ? `    fix: ${agent.hint}\n` : ''}`,
  );
  if (statuses.length === 0) process.stdout.write('no plugins installed\n');
  for (const s of statuses) {
    const mark = s.status === 'ok' ? '✓' : s.status === 'fixable' ? '!' : '✗';
    process.stdout.write(
      `${paint(`${mark} ${s.name}`, statusColor(s.status))} (${s.package}@${s.version}): ${s.status}${s.technique ? ` [${s.technique}]` : ''} — ${s.detail}\n`,
    );
    if (s.hint) process.stdout.write(`    fix: ${s.hint}\n`);
  }
  return 0;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}
