/**
 * Conformance of a plugin package: its manifest (the default export of its entry point), the
 * `scalpels` field of its package.json and the Options and Records tables of its README must say
 * the same thing. The README tables are written by hand; this is what keeps them true.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { OptionSpec, PluginManifest } from '../api.js';

export interface ConformanceOptions {
  /** The manifest to check; default: the default export of the package's entry point. */
  manifest?: PluginManifest;
  /** README to read instead of `<pluginDir>/README.md`. */
  readme?: string;
}

/**
 * Checks a plugin package folder and returns one line per disagreement (empty: it conforms).
 *
 * - package.json: the tracer name its package name stands for (or `scalpels.name`), `version` and
 *   `scalpels.apiVersion` equal the manifest's; each `scalpels.requires.anyOf[].name` is one of
 *   the manifest's techniques, when it declares techniques.
 * - README `## Options`: a table whose first column is `option` has one row per option (a row may
 *   name several options, each in backticks). Its `type` cell starts with the option's type (or
 *   lists the `choices` of a string option in backticks); a range written `(min..max)` there must
 *   be the spec's. Its `default` cell holds the default in backticks (a list: comma-joined); an
 *   option without a default must not show one value in backticks alone (words are fine: "the
 *   services' vhost").
 * - README `## Records`: tables whose first column starts with `series` name every series of the
 *   schema (brace lists expand: `network.{rx,tx}.bytes`), and only those; their `kind` cell is
 *   the series' kind and their `unit` cell names its unit. Rows whose first cell starts with
 *   `event`, and tables whose first column is `type` or `event`, name events of the schema. Every
 *   event of the schema is named in backticks somewhere in the section.
 *
 * Fields of an option spec that this does not know are ignored; names listed in an option's
 * `aliases` (when present) may stand for it in the README.
 */
export async function checkPluginConformance(
  pluginDir: string,
  opts: ConformanceOptions = {},
): Promise<string[]> {
  const out: string[] = [];
  const pkg = JSON.parse(readFileSync(join(pluginDir, 'package.json'), 'utf8')) as PackageJson;
  const manifest = opts.manifest ?? (await loadManifest(pluginDir, pkg));
  out.push(...checkPackageJson(pkg, manifest));
  const readmePath = opts.readme ?? join(pluginDir, 'README.md');
  if (!existsSync(readmePath)) return [...out, `README: ${readmePath} is missing`];
  const readme = readFileSync(readmePath, 'utf8');
  out.push(...checkOptionsTable(manifest, section(readme, 'Options')));
  out.push(...checkRecordsTables(manifest, section(readme, 'Records')));
  return out;
}

interface PackageJson {
  name?: string;
  version?: string;
  main?: string;
  exports?: unknown;
  scalpels?: {
    name?: string;
    apiVersion?: string;
    requires?: { anyOf?: readonly { name?: string }[] };
  };
}

async function loadManifest(dir: string, pkg: PackageJson): Promise<PluginManifest> {
  const pick = (e: unknown): string | undefined => {
    if (typeof e === 'string') return e;
    if (e && typeof e === 'object') {
      const o = e as Record<string, unknown>;
      return pick(o['.']) ?? pick(o.import) ?? pick(o.default);
    }
    return undefined;
  };
  const entry = join(dir, pick(pkg.exports) ?? pkg.main ?? 'index.js');
  const mod = (await import(pathToFileURL(entry).href)) as { default?: PluginManifest };
  if (!mod.default) throw new Error(`${entry}: no default export (the manifest)`);
  return mod.default;
}

function checkPackageJson(pkg: PackageJson, m: PluginManifest): string[] {
  const out: string[] = [];
  const fromName = /^(?:@scalpels\/plugin-|(?:@[^/]+\/)?scalpels-plugin-)(.+)$/.exec(
    pkg.name ?? '',
  )?.[1];
  const name = pkg.scalpels?.name ?? fromName;
  if (name !== m.name)
    out.push(`package.json: package ${pkg.name} names tracer ${name}, manifest name is ${m.name}`);
  if (pkg.version !== m.version)
    out.push(`package.json: version ${pkg.version}, manifest version ${m.version}`);
  if (pkg.scalpels?.apiVersion !== m.apiVersion)
    out.push(
      `package.json: scalpels.apiVersion ${JSON.stringify(pkg.scalpels?.apiVersion)}, manifest apiVersion ${JSON.stringify(m.apiVersion)}`,
    );
  const techniques = m.techniques?.map((t) => t.name);
  if (techniques)
    for (const alt of pkg.scalpels?.requires?.anyOf ?? [])
      if (!alt.name || !techniques.includes(alt.name))
        out.push(
          `package.json: scalpels.requires.anyOf names ${JSON.stringify(alt.name)}, not a technique of the manifest (${techniques.join(', ')})`,
        );
  for (const retired of Object.keys(m.retiredOptions ?? {}))
    if (retired in m.options) out.push(`manifest: option ${retired} is both declared and retired`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Markdown

/** Lines under `## <title>...` up to the next `## ` heading (subsections included). */
function section(markdown: string, title: string): string[] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`## ${title}`));
  if (start < 0) return [];
  const end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

interface Table {
  /** Lower-cased header cells. */
  header: string[];
  rows: string[][];
}

function tables(lines: readonly string[]): Table[] {
  const out: Table[] = [];
  let current: string[][] | undefined;
  for (const line of lines) {
    if (!line.trimStart().startsWith('|')) {
      current = undefined;
      continue;
    }
    const cells = splitRow(line);
    if (!current) {
      current = [cells];
      out.push({ header: cells.map((c) => c.toLowerCase()), rows: [] });
      continue;
    }
    if (cells.every((c) => /^:?-+:?$/.test(c))) continue; // separator
    out.at(-1)!.rows.push(cells);
  }
  return out;
}

/** Cells of a table row; `\|` is a literal bar. */
function splitRow(line: string): string[] {
  const cells = line
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split(/(?<!\\)\|/);
  return cells.map((c) => c.replace(/\\\|/g, '|').trim());
}

function codeSpans(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
}

/** `network.{rx,tx}.bytes` → `network.rx.bytes`, `network.tx.bytes`. */
function expandBraces(name: string): string[] {
  const m = /\{([^{}]*)\}/.exec(name);
  if (!m) return [name];
  return m[1]!
    .split(',')
    .flatMap((alt) =>
      expandBraces(name.slice(0, m.index) + alt.trim() + name.slice(m.index + m[0].length)),
    );
}

const EMPTY = new Set(['', '-', '–', '—']);

// ---------------------------------------------------------------------------------------------
// Options

function formatDefault(value: unknown): string {
  return Array.isArray(value) ? value.join(',') : String(value);
}

function checkOptionsTable(m: PluginManifest, lines: readonly string[]): string[] {
  const table = tables(lines).find((t) => /^options?$/.test(t.header[0] ?? ''));
  if (!table) return ['README: no options table (first column `option`) under "## Options"'];
  const out: string[] = [];
  const typeCol = table.header.indexOf('type');
  const defaultCol = table.header.indexOf('default');
  if (typeCol < 0) out.push('README: options table has no `type` column');
  if (defaultCol < 0) out.push('README: options table has no `default` column');
  const byName = new Map<string, string>();
  for (const [name, spec] of Object.entries(m.options)) {
    byName.set(name, name);
    const aliases = (spec as { aliases?: unknown }).aliases;
    if (Array.isArray(aliases))
      for (const a of aliases) if (typeof a === 'string') byName.set(a, name);
  }
  const seen = new Set<string>();
  for (const row of table.rows) {
    const names = codeSpans(row[0] ?? '');
    if (names.length === 0) {
      out.push(`README options: row "${row[0]}" names no option in backticks`);
      continue;
    }
    const options = new Set<string>();
    for (const n of names) {
      const option = byName.get(n);
      if (option) options.add(option);
      if (option && option !== n && !names.includes(option))
        out.push(`README options: \`${n}\` is an alias of \`${option}\`: name the option itself`);
      if (!option)
        out.push(
          `README options: \`${n}\` is not an option of the manifest${m.retiredOptions?.[n] ? ' (it is retired)' : ''}`,
        );
    }
    for (const name of options) {
      if (seen.has(name)) out.push(`README options: \`${name}\` has more than one row`);
      seen.add(name);
      const spec = m.options[name]!;
      if (typeCol >= 0) out.push(...checkType(name, spec, row[typeCol] ?? ''));
      if (defaultCol >= 0) out.push(...checkDefault(name, spec, row[defaultCol] ?? ''));
    }
  }
  for (const name of Object.keys(m.options))
    if (!seen.has(name)) out.push(`README options: option \`${name}\` is missing`);
  return out;
}

function checkType(name: string, spec: OptionSpec, cell: string): string[] {
  const out: string[] = [];
  const choices = 'choices' in spec ? spec.choices : undefined;
  const spans = codeSpans(cell);
  const word = /^[a-z]+/.exec(cell)?.[0];
  if (spans.length > 0 && !word) {
    // A type written as its choices: `auto` | `process` | ...
    const want = [...(choices ?? [])].sort().join('|');
    if (spec.type !== 'string' || !choices)
      out.push(
        `README options: \`${name}\` type lists choices ${spans.join('|')}; manifest type ${spec.type} without choices`,
      );
    else if ([...spans].sort().join('|') !== want)
      out.push(
        `README options: \`${name}\` choices ${spans.join('|')}; manifest ${choices.join('|')}`,
      );
    return out;
  }
  if (word !== spec.type)
    out.push(`README options: \`${name}\` type "${cell}"; manifest type ${spec.type}`);
  const range = /\(\s*([^.()\s]*)\s*\.\.\s*([^.()\s]*)\s*\)/.exec(cell);
  if (range) {
    const min = 'min' in spec && spec.min !== undefined ? String(spec.min) : '';
    const max = 'max' in spec && spec.max !== undefined ? String(spec.max) : '';
    if (range[1] !== min || range[2] !== max)
      out.push(
        `README options: \`${name}\` range ${range[1]}..${range[2]}; manifest ${min}..${max}`,
      );
  }
  return out;
}

function checkDefault(name: string, spec: OptionSpec, cell: string): string[] {
  const value = 'default' in spec ? spec.default : undefined;
  const spans = codeSpans(cell);
  if (value === undefined) {
    if (spans.length === 1 && cell === `\`${spans[0]}\``)
      return [`README options: \`${name}\` default ${cell}; manifest has no default`];
    return [];
  }
  const want = formatDefault(value);
  if (want === '' && EMPTY.has(cell)) return [];
  if (!spans.includes(want))
    return [`README options: \`${name}\` default "${cell}"; manifest default \`${want}\``];
  return [];
}

// ---------------------------------------------------------------------------------------------
// Records

function checkRecordsTables(m: PluginManifest, lines: readonly string[]): string[] {
  const out: string[] = [];
  const series = m.schema.series;
  const events = m.schema.events ?? {};
  const seenSeries = new Set<string>();
  const all = tables(lines);
  const seriesTables = all.filter((t) => (t.header[0] ?? '').startsWith('series'));
  const eventTables = all.filter((t) => /^(type|event)$/.test(t.header[0] ?? ''));
  if (Object.keys(series).length > 0 && seriesTables.length === 0)
    out.push('README: no series table (first column `series`) under "## Records"');
  for (const t of seriesTables) {
    const kindCol = t.header.indexOf('kind');
    const unitCol = t.header.indexOf('unit');
    for (const row of t.rows) {
      const first = row[0] ?? '';
      if (/^event\b/i.test(first) || row[kindCol]?.toLowerCase() === 'event') {
        out.push(...checkEventRow(events, row, -1));
        continue;
      }
      const names = codeSpans(first).flatMap(expandBraces);
      if (names.length === 0)
        out.push(`README records: row "${first}" names no series in backticks`);
      const units = new Set(
        (row[unitCol] ?? '')
          .toLowerCase()
          .split(/[^a-z0-9_%]+/)
          .filter(Boolean),
      );
      for (const n of names) {
        const spec = series[n];
        if (!spec) {
          out.push(`README records: \`${n}\` is not a series of the schema`);
          continue;
        }
        seenSeries.add(n);
        if (kindCol >= 0 && row[kindCol] !== spec.kind)
          out.push(`README records: \`${n}\` kind "${row[kindCol]}"; schema kind ${spec.kind}`);
        if (unitCol >= 0 && !units.has(spec.unit.toLowerCase()))
          out.push(`README records: \`${n}\` unit "${row[unitCol]}"; schema unit ${spec.unit}`);
      }
    }
  }
  for (const t of eventTables) {
    const unitCol = t.header.findIndex((h) => h === 'value' || h === 'unit');
    for (const row of t.rows) out.push(...checkEventRow(events, row, unitCol));
  }
  for (const n of Object.keys(series))
    if (!seenSeries.has(n)) out.push(`README records: series \`${n}\` is missing`);
  const named = new Set(lines.flatMap(codeSpans));
  for (const n of Object.keys(events))
    if (!named.has(n)) out.push(`README records: event \`${n}\` is not named`);
  return out;
}

function checkEventRow(
  events: NonNullable<PluginManifest['schema']['events']>,
  row: readonly string[],
  unitCol: number,
): string[] {
  const out: string[] = [];
  for (const n of codeSpans(row[0] ?? '')) {
    const spec = events[n];
    if (!spec) {
      out.push(`README records: event \`${n}\` is not an event of the schema`);
      continue;
    }
    const cell = unitCol >= 0 ? (row[unitCol] ?? '') : '';
    if (
      unitCol >= 0 &&
      spec.valueUnit &&
      !cell
        .toLowerCase()
        .split(/[^a-z0-9_%]+/)
        .includes(spec.valueUnit.toLowerCase())
    )
      out.push(
        `README records: event \`${n}\` value "${cell}"; schema valueUnit ${spec.valueUnit}`,
      );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Bundles

/**
 * Checks a bundle package's presets against the tracers they name: each tracer must be one of
 * `manifests` (by tracer name) and each preset option one of its options (or their aliases).
 * Returns one line per disagreement.
 */
export function checkBundleConformance(
  bundleDir: string,
  manifests: ReadonlyMap<string, PluginManifest>,
): string[] {
  const out: string[] = [];
  const pkg = JSON.parse(readFileSync(join(bundleDir, 'package.json'), 'utf8')) as {
    scalpels?: { bundle?: { presets?: Record<string, { tracers?: Record<string, unknown> }> } };
  };
  const presets = pkg.scalpels?.bundle?.presets ?? {};
  for (const [preset, def] of Object.entries(presets))
    for (const [tracer, setting] of Object.entries(def.tracers ?? {})) {
      const m = manifests.get(tracer);
      if (!m) {
        out.push(`preset ${preset}: tracer ${tracer} is not a known plugin`);
        continue;
      }
      const known = new Set(Object.keys(m.options));
      for (const spec of Object.values(m.options)) {
        const aliases = (spec as { aliases?: unknown }).aliases;
        if (Array.isArray(aliases)) for (const a of aliases) known.add(String(a));
      }
      const options = (setting as { options?: Record<string, unknown> } | undefined)?.options;
      for (const o of Object.keys(options ?? {}))
        if (!known.has(o)) out.push(`preset ${preset}: ${tracer} has no option ${o}`);
    }
  return out;
}
