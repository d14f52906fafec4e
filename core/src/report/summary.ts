import type {
  ReportAggregate,
  ReportColumn,
  ReportFigure,
  ReportHistogramView,
  ReportTableView,
  ReportView,
  SeriesKind,
} from '../api.js';
import type { ReportEventTop, ReportSeries, ReportTracer, ReportV1 } from '../report.js';
import { escapeControl } from '../text-safety.js';
import { humanize } from '../units.js';

/**
 * The summary a report opens with, computed once from the report and the plugins' views and
 * rendered by every format (table, HTML; carried in the JSON as `summary`). The core knows no
 * plugin: a tracer without a view gets the generic one (its series ranked by kind).
 */

export interface SummaryFigure {
  tracer: string;
  label: string;
  value: number;
  unit: string;
  /** value / task.ops for totals of counters when `--ops` is given. */
  perOp: number | null;
}

export interface SummaryColumn {
  label: string;
  unit: string;
  /** Whether the column is a total of counters (the per-operation column divides it). */
  total: boolean;
}

export interface SummaryRow {
  /** The key labels' values, in the table's key order (an event-only row: the event key). */
  key: string[];
  values: (number | null)[];
  /** Per-row units, for tables whose rows mix series of different units (the generic view). */
  units?: string[];
}

export interface SummaryTable {
  title: string;
  /** Key column headers (label names, or `key` for event keys). */
  keyNames: string[];
  columns: SummaryColumn[];
  /** Index of the column that ranks the rows. */
  rankedBy: number;
  rows: SummaryRow[];
  /** Rows with a non-zero value that did not fit in `--top`. */
  more: number;
}

export interface SummarySection {
  tracer: string;
  /** Nodes the section's figures come from (several: combined across them). */
  nodes: string[];
  title: string;
  status: string;
  records: number;
  parseErrors: number;
  dropped: number;
  technique: string | null;
  error: string | null;
  tables: SummaryTable[];
  /** Series of the tracer, and how many of them are all zero. */
  series: number;
  zeroSeries: number;
}

export interface ReportSummary {
  durationS: number;
  ops: number | null;
  headline: SummaryFigure[];
  sections: SummarySection[];
}

export interface SummaryOptions {
  /** Rows per table (default 10). */
  top?: number;
  /** Operations the workload did (`--ops N`). */
  ops?: number;
}

/** Views by tracer name (what the CLI loads from the plugins' manifests). */
export type ReportViews = Readonly<Record<string, ReportView | undefined>>;

interface Source {
  tracer: string;
  nodes: string[];
  status: string;
  records: number;
  parseErrors: number;
  dropped: number;
  technique: string | null;
  error: string | null;
  series: readonly ReportSeries[];
  events: { count: number; top: readonly ReportEventTop[] };
}

const names = (s: string | readonly string[] | undefined): string[] =>
  s === undefined ? [] : typeof s === 'string' ? [s] : [...s];

const matches = (
  s: ReportSeries,
  series: readonly string[],
  where?: Readonly<Record<string, string>>,
): boolean =>
  series.includes(s.name) && (!where || Object.entries(where).every(([k, v]) => s.labels[k] === v));

const defaultOf = (kind: SeriesKind): ReportAggregate => (kind === 'gauge' ? 'peak' : 'total');

const isQuantile = (of: ReportAggregate): boolean => of === 'p50' || of === 'p95' || of === 'p99';

/**
 * A quantile of histogram buckets (`le` → count), read as the upper bound of the bucket that
 * holds it. Cumulative buckets are turned into per-bucket counts first.
 */
export function quantile(
  buckets: ReadonlyMap<string, number>,
  q: number,
  cumulative: boolean,
): number | null {
  const sorted = [...buckets.entries()]
    .map(([le, n]) => [le === '+Inf' ? Infinity : Number(le), n] as const)
    .filter(([le]) => !Number.isNaN(le))
    .sort((a, b) => a[0] - b[0]);
  const counts = cumulative
    ? sorted.map(([le, n], i) => [le, Math.max(0, n - (i ? sorted[i - 1]![1] : 0))] as const)
    : sorted;
  const total = counts.reduce((a, [, n]) => a + n, 0);
  if (total <= 0) return null;
  let acc = 0;
  for (const [le, n] of counts) {
    acc += n;
    if (acc >= q * total) return Number.isFinite(le) ? le : (sorted.at(-2)?.[0] ?? null);
  }
  return null;
}

/** Cumulative buckets never decrease with `le`; per-bucket counts of a real workload do. */
function looksCumulative(buckets: ReadonlyMap<string, number>): boolean {
  const v = [...buckets.entries()]
    .map(([le, n]) => [le === '+Inf' ? Infinity : Number(le), n] as const)
    .sort((a, b) => a[0] - b[0])
    .map(([, n]) => n);
  return v.every((n, i) => i === 0 || n >= v[i - 1]!);
}

/** Aggregates matched series: totals and peaks add up; quantiles read the summed buckets. */
function aggregate(
  series: readonly ReportSeries[],
  of: ReportAggregate | undefined,
  histograms: ReportView['histograms'],
): { value: number | null; unit: string; total: boolean } {
  if (!series.length) return { value: null, unit: '', total: false };
  const first = series[0]!;
  const how = of ?? defaultOf(first.kind);
  if (isQuantile(how)) {
    const buckets = new Map<string, number>();
    for (const s of series) {
      const le = s.labels.le;
      if (le !== undefined) buckets.set(le, (buckets.get(le) ?? 0) + s.sum);
    }
    const h: ReportHistogramView | undefined = histograms?.[first.name];
    const q = how === 'p50' ? 0.5 : how === 'p95' ? 0.95 : 0.99;
    return {
      value: quantile(buckets, q, h?.cumulative ?? looksCumulative(buckets)),
      unit: h?.boundUnit ?? (first.unit === 'count' ? '' : first.unit),
      total: false,
    };
  }
  let value = 0;
  for (const s of series) value += how === 'peak' ? s.max : how === 'mean' ? s.mean : s.sum;
  const total = how === 'total' && first.kind !== 'gauge';
  // Bucket counts of a histogram are counts, whatever unit their bounds have.
  return { value, unit: first.kind === 'histogram' ? 'count' : first.unit, total };
}

function figureOf(src: Source, f: ReportFigure, view: ReportView, ops: number | null) {
  const picked = src.series.filter((s) => matches(s, names(f.series), f.where));
  const a = aggregate(picked, f.of, view.histograms);
  // Zero is hidden in the headline as in the tables: a gauge never sampled while the target
  // lived (a workload shorter than the interval) reads 0, which would be a false figure.
  if (a.value === null || a.value === 0) return undefined;
  return {
    tracer: src.tracer,
    label: f.label,
    value: a.value,
    unit: f.unit ?? a.unit,
    perOp: ops && a.total ? a.value / ops : null,
  } satisfies SummaryFigure;
}

const keyOf = (labels: Record<string, string>, key: readonly string[]): string[] | undefined => {
  const out: string[] = [];
  for (const k of key) {
    const v = labels[k];
    if (v === undefined) return undefined;
    out.push(v);
  }
  return out;
};

function tableOf(
  src: Source,
  t: ReportTableView,
  view: ReportView,
  top: number,
): SummaryTable | undefined {
  const rowKeys = new Map<string, string[]>();
  const perRow = new Map<string, ReportSeries[]>();
  for (const s of src.series) {
    if (t.where && !Object.entries(t.where).every(([k, v]) => s.labels[k] === v)) continue;
    const key = keyOf(s.labels, t.key);
    if (!key) continue;
    const id = JSON.stringify(key);
    rowKeys.set(id, key);
    let g = perRow.get(id);
    if (!g) perRow.set(id, (g = []));
    g.push(s);
  }
  const events = new Map<string, ReportEventTop>();
  if (t.events) for (const e of src.events.top) events.set(JSON.stringify([e.key]), e);
  for (const [id, e] of events) if (!rowKeys.has(id) && t.key.length <= 1) rowKeys.set(id, [e.key]);
  if (!rowKeys.size) return undefined;

  const columns: SummaryColumn[] = t.columns.map((c) => ({
    label: c.label,
    unit: '',
    total: false,
  }));
  const index = new Map(t.columns.map((c, i) => [c.label, i]));
  const rows: SummaryRow[] = [];
  for (const [id, key] of rowKeys) {
    const series = perRow.get(id) ?? [];
    const values: (number | null)[] = t.columns.map(() => null);
    t.columns.forEach((c: ReportColumn, i) => {
      const wanted = names(c.series);
      if (wanted.length) {
        const picked = series.filter((s) => wanted.includes(s.name));
        const a = aggregate(picked, c.of, view.histograms);
        if (a.value !== null) {
          values[i] = a.value;
          columns[i]!.unit ||= c.unit ?? a.unit;
          columns[i]!.total ||= a.total;
          return;
        }
      }
      const e = c.event ? events.get(id) : undefined;
      if (e && c.event) {
        values[i] = e[c.event];
        columns[i]!.unit ||=
          c.unit ?? (c.event === 'count' ? 'count' : c.event === 'totalValue' ? '' : 'ms');
        columns[i]!.total ||= c.event === 'count' || c.event === 'totalMs';
      }
    });
    rows.push({ key, values });
  }
  // Derived columns, once the others are known.
  t.columns.forEach((c, i) => {
    if (c.ratio) {
      const [n, d] = c.ratio.map((l) => index.get(l));
      for (const r of rows) {
        const num = n === undefined ? null : r.values[n];
        const den = d === undefined ? null : r.values[d];
        r.values[i] = num !== null && num !== undefined && den ? num / den : null;
      }
      columns[i]!.unit = c.unit ?? (n === undefined ? '' : columns[n]!.unit);
    } else if (c.share) {
      const s = index.get(c.share);
      const sum = s === undefined ? 0 : rows.reduce((a, r) => a + (r.values[s] ?? 0), 0);
      for (const r of rows) r.values[i] = s !== undefined && sum ? (r.values[s] ?? 0) / sum : null;
      columns[i]!.unit = 'fraction';
    }
  });
  const live = rows.filter((r) => r.values.some((v) => v !== null && v !== 0));
  if (!live.length) return undefined;
  const candidates = (t.rank ?? [t.columns[0]!.label])
    .map((l) => index.get(l))
    .filter((i): i is number => i !== undefined);
  const rankedBy =
    candidates.find((i) => live.some((r) => (r.values[i] ?? 0) !== 0)) ?? candidates[0] ?? 0;
  live.sort(
    (a, b) =>
      (b.values[rankedBy] ?? -Infinity) - (a.values[rankedBy] ?? -Infinity) ||
      a.key.join(' ').localeCompare(b.key.join(' ')),
  );
  const n = Math.min(top, t.limit ?? top);
  const shown = live.slice(0, n);
  // Columns the tracer had nothing for (times without latency=true) are left out.
  const keep = columns
    .map((_, i) => i)
    .filter((i) => i === rankedBy || shown.some((r) => r.values[i] !== null));
  return {
    title: t.title,
    keyNames: [...t.key],
    columns: keep.map((i) => columns[i]!),
    rankedBy: keep.indexOf(rankedBy),
    rows: shown.map((r) => ({ key: r.key, values: keep.map((i) => r.values[i]!) })),
    more: Math.max(0, live.length - n),
  };
}

const labelText = (labels: Record<string, string>, skip?: string): string =>
  Object.entries(labels)
    .filter(([k]) => k !== skip)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');

/** Tracers without a view: their non-zero series ranked by kind, with the columns that mean something. */
function genericTables(src: Source, top: number): SummaryTable[] {
  const out: SummaryTable[] = [];
  const live = src.series.filter((s) => s.sum !== 0 || s.max !== 0 || s.min !== 0);
  const counters = live.filter((s) => s.kind === 'counter');
  if (counters.length) {
    const rows = counters
      .map((s) => ({
        key: [s.name, labelText(s.labels)],
        values: [s.sum, s.rate],
        units: [s.unit, `${s.unit}/s`],
      }))
      .sort((a, b) => b.values[0]! - a.values[0]!);
    out.push({
      title: 'Counters',
      keyNames: ['series', 'labels'],
      columns: [
        { label: 'total', unit: '', total: true },
        { label: 'rate', unit: '/s', total: false },
      ],
      rankedBy: 0,
      rows: rows.slice(0, top),
      more: Math.max(0, rows.length - top),
    });
  }
  const gauges = live.filter((s) => s.kind === 'gauge');
  if (gauges.length) {
    const rows = gauges
      .map((s) => ({
        key: [s.name, labelText(s.labels)],
        values: [s.min, s.mean, s.max],
        units: [s.unit, s.unit, s.unit],
      }))
      .sort((a, b) => b.values[2]! - a.values[2]!);
    out.push({
      title: 'Gauges',
      keyNames: ['series', 'labels'],
      columns: ['min', 'mean', 'max'].map((label) => ({ label, unit: '', total: false })),
      rankedBy: 2,
      rows: rows.slice(0, top),
      more: Math.max(0, rows.length - top),
    });
  }
  const hist = new Map<
    string,
    { name: string; labels: string; buckets: Map<string, number>; unit: string }
  >();
  for (const s of live)
    if (s.kind === 'histogram' && s.labels.le !== undefined) {
      const labels = labelText(s.labels, 'le');
      const id = `${s.name}\0${labels}`;
      let h = hist.get(id);
      if (!h)
        hist.set(
          id,
          (h = {
            name: s.name,
            labels,
            buckets: new Map(),
            unit: s.unit === 'count' ? '' : s.unit,
          }),
        );
      h.buckets.set(s.labels.le, (h.buckets.get(s.labels.le) ?? 0) + s.sum);
    }
  if (hist.size) {
    const rows = [...hist.values()]
      .map((h) => {
        const cum = looksCumulative(h.buckets);
        const count = cum
          ? Math.max(...h.buckets.values())
          : [...h.buckets.values()].reduce((a, n) => a + n, 0);
        return {
          key: [h.name, h.labels],
          values: [
            count,
            quantile(h.buckets, 0.5, cum),
            quantile(h.buckets, 0.95, cum),
            quantile(h.buckets, 0.99, cum),
          ],
          units: ['count', h.unit, h.unit, h.unit],
        };
      })
      .sort((a, b) => b.values[0]! - a.values[0]!);
    out.push({
      title: 'Histograms',
      keyNames: ['series', 'labels'],
      columns: ['count', 'p50', 'p95', 'p99'].map((label, i) => ({
        label,
        unit: '',
        total: i === 0,
      })),
      rankedBy: 0,
      rows: rows.slice(0, top),
      more: Math.max(0, rows.length - top),
    });
  }
  return out;
}

function eventsTable(src: Source, top: number): SummaryTable | undefined {
  if (!src.events.top.length) return undefined;
  return {
    title: `Top events (${src.events.count} in all)`,
    keyNames: ['key'],
    columns: [
      { label: 'count', unit: 'count', total: true },
      { label: 'total', unit: 'ms', total: true },
      { label: 'mean', unit: 'ms', total: false },
      { label: 'p95', unit: 'ms', total: false },
    ],
    rankedBy: 1,
    rows: src.events.top
      .slice(0, top)
      .map((e) => ({ key: [e.key], values: [e.count, e.totalMs, e.meanMs, e.p95Ms] })),
    more: Math.max(0, src.events.top.length - top),
  };
}

/** Event tops of one tracer on several nodes, merged by key (p95: the highest node's). */
function mergeEvents(tracers: readonly ReportTracer[]): Source['events'] {
  const by = new Map<string, ReportEventTop>();
  let count = 0;
  for (const t of tracers) {
    count += t.events.count;
    for (const e of t.events.top) {
      const have = by.get(e.key);
      if (!have) by.set(e.key, { ...e });
      else {
        have.count += e.count;
        have.totalMs += e.totalMs;
        have.totalValue += e.totalValue;
        have.meanMs = have.count ? have.totalMs / have.count : 0;
        have.p95Ms = Math.max(have.p95Ms, e.p95Ms);
      }
    }
  }
  return {
    count,
    top: [...by.values()].sort((a, b) => b.totalMs - a.totalMs || b.count - a.count),
  };
}

function sourcesOf(r: ReportV1): Source[] {
  if (!r.combined?.length) return r.tracers.map((t) => ({ ...t, nodes: [t.node] }));
  return r.combined.map((c) => {
    const parts = r.tracers.filter((t) => t.tracer === c.tracer);
    const failed = parts.find((t) => t.status !== 'stopped' && t.status !== 'running');
    return {
      tracer: c.tracer,
      nodes: c.nodes,
      status: failed
        ? `${failed.status} on ${failed.node}`
        : [...new Set(parts.map((t) => t.status))].join('/'),
      records: c.records,
      parseErrors: c.parseErrors,
      dropped: c.dropped,
      technique: [...new Set(parts.map((t) => t.technique).filter(Boolean))].join('/') || null,
      error:
        parts
          .map((t) => t.error && `${t.node}: ${t.error}`)
          .filter(Boolean)
          .join('; ') || null,
      series: c.series,
      events: mergeEvents(parts),
    };
  });
}

/** The headline and each tracer's top tables, from the report and the plugins' views. */
export function summarize(
  r: ReportV1,
  views: ReportViews = {},
  opts: SummaryOptions = {},
): ReportSummary {
  const top = Math.max(1, opts.top ?? 10);
  const ops = opts.ops ?? r.task.ops ?? null;
  const start = Date.parse(r.task.startedAt);
  const end = r.task.stoppedAt ? Date.parse(r.task.stoppedAt) : Date.now();
  const headline: SummaryFigure[] = [];
  const sections: SummarySection[] = [];
  for (const src of sourcesOf(r)) {
    const view = views[src.tracer];
    if (view)
      for (const f of view.headline ?? []) {
        const fig = figureOf(src, f, view, ops);
        if (fig) headline.push(fig);
      }
    const tables = view?.tables
      ? view.tables
          .map((t) => tableOf(src, t, view, top))
          .filter((t): t is SummaryTable => t !== undefined)
      : genericTables(src, top);
    if (!view?.tables) {
      const ev = eventsTable(src, top);
      if (ev) tables.push(ev);
    }
    sections.push({
      tracer: src.tracer,
      nodes: src.nodes,
      title: view?.title ?? src.tracer,
      status: src.status,
      records: src.records,
      parseErrors: src.parseErrors,
      dropped: src.dropped,
      technique: src.technique,
      error: src.error,
      tables,
      series: src.series.length,
      zeroSeries: src.series.filter((s) => s.sum === 0 && s.max === 0 && s.min === 0).length,
    });
  }
  return { durationS: Math.max(0, (end - start) / 1000), ops, headline, sections };
}

// ---------------------------------------------------------------------------------------------
// Text

/** Control characters of traced keys (paths, SQL) would drive the terminal: shown escaped. */
const printable = (s: string): string => escapeControl(s);

/** Keys longer than this are cut in the text summary (whole in `--all`, JSON and HTML). */
const KEY_WIDTH = 72;

/** Cut in the middle: a path keeps its file name, a statement its start and end. */
const cut = (s: string): string => {
  const p = printable(s);
  const head = Math.floor(KEY_WIDTH / 3);
  return p.length > KEY_WIDTH
    ? `${p.slice(0, head)}…${p.slice(p.length - (KEY_WIDTH - head - 1))}`
    : p;
};

/** Aligns cells: the first `left` columns to the left (keys), the others to the right (figures). */
function align(rows: string[][], left: number, indent: string, lastLeft = false): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map(
    (r) =>
      indent +
      r
        .map((c, i) =>
          i < left || (lastLeft && i === r.length - 1)
            ? c.padEnd(widths[i]!)
            : c.padStart(widths[i]!),
        )
        .join('  ')
        .trimEnd(),
  );
}

/** The cells of a summary table: key columns, figures, and a per-operation column when asked. */
export function tableCells(
  t: SummaryTable,
  ops: number | null,
  fmt: (v: number | null, unit: string) => string,
): { header: string[]; rows: string[][]; keys: number } {
  const perOp = ops !== null && t.columns[t.rankedBy]?.total === true;
  const header = [...t.keyNames];
  t.columns.forEach((c, i) => {
    header.push(i === t.rankedBy ? `${c.label} ▾` : c.label);
    if (perOp && i === t.rankedBy) header.push(`${c.label}/op`);
  });
  const rows = t.rows.map((r) => {
    const cells = r.key.map(cut);
    r.values.forEach((v, i) => {
      const unit = r.units?.[i] ?? t.columns[i]!.unit;
      cells.push(fmt(v, unit));
      if (perOp && i === t.rankedBy) cells.push(fmt(v === null ? null : v / ops, unit));
    });
    return cells;
  });
  return { header, rows, keys: t.keyNames.length };
}

/** What the workload cost, then each tracer's top rows: the default `scalpels report`. */
export function formatSummaryText(
  r: ReportV1,
  fmt: (v: number | null, unit: string) => string = humanize,
): string {
  const s = r.summary!;
  const t = r.task;
  // A run's target repeats its name: said once.
  const target =
    t.target && t.target !== `run: ${t.name}` ? ` · target: ${printable(t.target)}` : '';
  const out: string[] = [`task ${t.id} "${printable(t.name)}" ${t.status}${target}`];
  for (const m of r.markers ?? []) out.push(`  marker ${m.ts}  ${printable(m.text)}`);
  const head: string[][] = [['duration', fmt(s.durationS, 's'), '', '']];
  for (const f of s.headline)
    head.push([
      f.label,
      fmt(f.value, f.unit),
      f.perOp === null ? '' : `${fmt(f.perOp, f.unit)}/op`,
      f.tracer,
    ]);
  out.push('');
  if (s.ops !== null) out.push(`  per operation: ${s.ops} operations`);
  out.push(...align(head, 1, '  ', true));
  for (const sec of s.sections) {
    out.push('');
    const where =
      sec.nodes.length > 1
        ? ` combined over ${sec.nodes.length} nodes (${sec.nodes.join(', ')})`
        : ` on ${sec.nodes[0]}`;
    out.push(
      `${sec.tracer} · ${sec.title}${where}: ${sec.status}${sec.technique ? ` [${sec.technique}]` : ''}, ` +
        `${sec.records} records` +
        (sec.parseErrors ? `, ${sec.parseErrors} parse errors` : '') +
        (sec.dropped ? `, ${sec.dropped} DROPPED` : ''),
    );
    if (sec.error) out.push(`  error: ${printable(sec.error)}`);
    const of = (tb: SummaryTable): string =>
      tb.more ? ` (top ${tb.rows.length} of ${tb.rows.length + tb.more})` : '';
    // One table: its title ends the section's line (one screen for a few tracers).
    if (sec.tables.length === 1)
      out[out.length - 1] += ` · ${sec.tables[0]!.title}${of(sec.tables[0]!)}`;
    for (const tb of sec.tables) {
      const { header, rows, keys } = tableCells(tb, s.ops, fmt);
      if (sec.tables.length > 1) out.push(`  ${tb.title}${of(tb)}`);
      out.push(...align([header, ...rows], keys, sec.tables.length > 1 ? '    ' : '  '));
    }
    if (!sec.tables.length) out.push('  no activity recorded');
  }
  const zero = s.sections.reduce((a, x) => a + x.zeroSeries, 0);
  const all = s.sections.reduce((a, x) => a + x.series, 0);
  out.push(
    '',
    `${all} series (${zero} all zero, hidden); every series: scalpels report ${t.id} --all`,
  );
  return `${out.join('\n')}\n`;
}
