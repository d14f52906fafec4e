import type { EventRanking, SeriesSummary, Store, TaskRow } from './store/types.js';
import { table } from './table.js';
import { escapeControl, escapeControlKeepLines, neutralizeCsvFormula } from './text-safety.js';
import { phasesOf } from './report/timeline.js';
import { combineNodes, type CombinedTracer } from './report/combined.js';
import {
  formatSummaryText,
  summarize,
  type ReportSummary,
  type ReportViews,
} from './report/summary.js';

/** The report format name; a change that breaks it is a new name. Documented in docs/report-format.md. */
export const REPORT_FORMAT = 'scalpels.report/v1';

/** A series' aggregates over the task (the store's summary without its time range), with its rate. */
export type ReportSeries = Omit<SeriesSummary, 'firstTs' | 'lastTs'> & {
  /** Counters: sum per second over the tracer's run. Gauges and histograms: null. */
  rate: number | null;
  /** Counters, with `--ops N`: sum / N (extra field, v1). */
  perOp?: number;
};

export interface ReportEventTop {
  key: string;
  count: number;
  totalMs: number;
  meanMs: number;
  p95Ms: number;
  /** Sum of the events' values (bytes, rows), in the unit the event type declares (extra field, v1). */
  totalValue: number;
  /** With `--ops N`: count / N (extra field, v1). */
  perOp?: number;
}

export interface ReportTracer {
  id: number;
  tracer: string;
  plugin: { package: string; version: string };
  node: string;
  status: string;
  exitCode: number | null;
  records: number;
  parseErrors: number;
  dropped: number;
  technique: string | null;
  error: string | null;
  startedAt: string | null;
  stoppedAt: string | null;
  series: ReportSeries[];
  events: { count: number; top: ReportEventTop[] };
}

export interface ReportV1 {
  format: typeof REPORT_FORMAT;
  task: {
    id: string;
    name: string;
    status: string;
    startedAt: string;
    stoppedAt: string | null;
    labels: Record<string, string>;
    nodes: string[];
    target: string | null;
    /** Operations the workload did, from `--ops N` (extra field, v1). */
    ops?: number;
  };
  tracers: ReportTracer[];
  /** `scalpels mark` notes on the task, in time order (extra field, v1). */
  markers: { ts: string; text: string; node: string | null }[];
  /**
   * With markers: counter totals per series name from one marker to the next (extra field, v1).
   */
  phases?: {
    label: string;
    from: string;
    to: string;
    totals: { tracer: string; name: string; unit: string; sum: number }[];
  }[];
  /** A task on several nodes: each tracer's series combined across nodes (extra field, v1). */
  combined?: CombinedTracer[];
  /** The headline and each tracer's top tables, from the plugins' report views (extra field, v1). */
  summary?: ReportSummary;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** Builds a report from store aggregations (no record is loaded into memory). */
export async function buildReport(
  store: Store,
  task: TaskRow,
  opts: {
    /** Event keys per tracer (default 20) and rows per summary table (default 10). */
    top?: number;
    now?: number;
    topBy?: EventRanking;
    /** Operations the workload did: adds per-operation figures. */
    ops?: number;
    /** The plugins' report views by tracer name (tracers without one get the generic view). */
    views?: ReportViews;
  } = {},
): Promise<ReportV1> {
  const ops = opts.ops !== undefined && opts.ops > 0 ? opts.ops : undefined;
  const tracers = await store.listTracers(task.id);
  const now = opts.now ?? Date.now();
  const markers = store.listMarkers ? await store.listMarkers(task.id) : [];
  const report: ReportV1 = {
    format: REPORT_FORMAT,
    task: {
      id: task.id,
      name: task.name,
      status: task.status,
      startedAt: iso(task.startedAt)!,
      stoppedAt: iso(task.stoppedAt),
      labels: task.labels,
      nodes: task.nodes,
      target: task.target,
      ...(ops ? { ops } : {}),
    },
    tracers: await Promise.all(
      tracers.map(async (t) => {
        const start = t.startedAt ?? task.startedAt;
        const end = t.stoppedAt ?? task.stoppedAt ?? now;
        const seconds = Math.max(0.001, (end - start) / 1000);
        const [summaries, events] = await Promise.all([
          store.seriesSummaries(t.id),
          // The summary joins event keys to its rows: never fewer than 20.
          store.eventSummary(t.id, Math.max(opts.top ?? 20, 20), opts.topBy),
        ]);
        return {
          id: t.id,
          tracer: t.tracer,
          plugin: { package: t.pluginPackage, version: t.pluginVersion },
          node: t.node,
          status: t.status,
          exitCode: t.exitCode,
          records: t.records,
          parseErrors: t.parseErrors,
          dropped: t.dropped,
          technique: t.technique,
          error: t.error,
          startedAt: iso(t.startedAt),
          stoppedAt: iso(t.stoppedAt),
          series: summaries.map((s) => ({
            name: s.name,
            unit: s.unit,
            kind: s.kind,
            labels: s.labels,
            points: s.points,
            sum: s.sum,
            min: s.min,
            max: s.max,
            mean: s.mean,
            last: s.last,
            rate: s.kind === 'counter' ? s.sum / seconds : null,
            ...(ops && s.kind === 'counter' ? { perOp: s.sum / ops } : {}),
          })),
          events: {
            count: events.count,
            top: events.top
              .slice(0, opts.top ?? 20)
              .map(({ key, count, totalMs, meanMs, p95Ms, totalValue }) => ({
                key,
                count,
                totalMs,
                meanMs,
                p95Ms,
                totalValue,
                ...(ops ? { perOp: count / ops } : {}),
              })),
          },
        };
      }),
    ),
    markers: markers.map((m) => ({ ts: iso(m.ts)!, text: m.text, node: m.node })),
  };
  if (new Set(report.tracers.map((t) => t.node)).size > 1)
    report.combined = combineNodes(report.tracers);
  if (markers.length && store.seriesRange) {
    const end = task.stoppedAt ?? now;
    report.phases = (await phasesOf(store, report, task.startedAt, end, markers)).map((p) => ({
      label: p.label,
      from: iso(p.from)!,
      to: iso(p.to)!,
      totals: p.totals,
    }));
  }
  report.summary = summarize(report, opts.views, { top: opts.top ?? 10, ops });
  return report;
}

// ---------------------------------------------------------------------------------------------
// Text formats

function num(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return '-';
  if (Number.isInteger(n)) return String(n);
  const a = Math.abs(n);
  return a >= 100 ? n.toFixed(0) : a >= 1 ? n.toFixed(2) : n.toPrecision(3);
}

function labelText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** The default text report: headline and top rows (`all`: every series, as `formatReportTable`). */
export function formatReportText(r: ReportV1, opts: { all?: boolean } = {}): string {
  if (opts.all || !r.summary) return formatReportTable(r);
  return formatSummaryText(r);
}

/** Every series of every tracer (`scalpels report --all`). */
export function formatReportTable(r: ReportV1): string {
  const t = r.task;
  const out: string[] = [
    `task ${t.id} "${escapeControl(t.name)}" ${t.status}  ${t.startedAt} → ${t.stoppedAt ?? 'running'}  target: ${escapeControl(t.target ?? '-')}`,
  ];
  for (const m of r.markers ?? []) out.push(`  marker ${m.ts}  ${escapeControl(m.text)}`);
  if (r.phases?.length) {
    const keys = [
      ...new Map(
        r.phases.flatMap((p) => p.totals.map((x) => [`${x.tracer}\0${x.name}`, x] as const)),
      ).values(),
    ].filter((k) =>
      r.phases!.some((p) =>
        p.totals.some((x) => x.tracer === k.tracer && x.name === k.name && x.sum !== 0),
      ),
    );
    if (keys.length) {
      out.push('', 'phases (counter totals between markers)');
      out.push(
        table(
          ['tracer', 'series', 'unit', ...r.phases.map((p) => p.label)],
          keys.map((k) => [
            k.tracer,
            k.name,
            k.unit,
            ...r.phases!.map((p) =>
              num(p.totals.find((x) => x.tracer === k.tracer && x.name === k.name)?.sum ?? null),
            ),
          ]),
        )
          .split('\n')
          .map((l) => `  ${l}`)
          .join('\n'),
      );
    }
  }
  for (const tr of r.tracers) {
    out.push('');
    out.push(
      `tracer ${tr.tracer} (${tr.plugin.package}@${tr.plugin.version}) on ${tr.node}: ${tr.status}` +
        `${tr.technique ? ` [${tr.technique}]` : ''}, ${tr.records} records, ${tr.parseErrors} parse errors, ${tr.dropped} dropped` +
        (tr.exitCode !== null && tr.status === 'failed' ? `, exit code ${tr.exitCode}` : ''),
    );
    if (tr.error)
      out.push(tr.error.startsWith('note: ') ? `  ${tr.error}` : `  error: ${tr.error}`);
    if (tr.series.length > 0) out.push(seriesTable(tr.series));
    if (tr.events.count > 0) {
      out.push(`  events: ${tr.events.count}`);
      out.push(
        table(
          [
            'rank',
            'count',
            ...(r.task.ops ? ['per op'] : []),
            'total ms',
            'mean ms',
            'p95 ms',
            'total value',
            'key',
          ],
          tr.events.top.map((e, i) => [
            String(i + 1),
            String(e.count),
            ...(r.task.ops ? [num(e.perOp ?? null)] : []),
            num(e.totalMs),
            num(e.meanMs),
            num(e.p95Ms),
            num(e.totalValue),
            e.key,
          ]),
        )
          .split('\n')
          .map((l) => `  ${l}`)
          .join('\n'),
      );
    }
  }
  for (const c of r.combined ?? []) {
    out.push('');
    out.push(
      `combined ${c.tracer} over ${c.nodes.length} nodes (${c.nodes.join(', ')}): ` +
        `${c.records} records, ${c.parseErrors} parse errors, ${c.dropped} dropped`,
    );
    if (c.series.length > 0) out.push(seriesTable(c.series));
  }
  // Task names, markers and traced process names reach a terminal: controls are shown escaped.
  return escapeControlKeepLines(out.join('\n') + '\n');
}

function seriesTable(series: readonly ReportSeries[]): string {
  const perOp = series.some((s) => s.perOp !== undefined);
  return table(
    [
      'series',
      'labels',
      'unit',
      'kind',
      'points',
      'sum',
      ...(perOp ? ['per op'] : []),
      'rate/s',
      'min',
      'mean',
      'max',
      'last',
    ],
    series.map((s) => [
      s.name,
      labelText(s.labels) || '-',
      s.unit,
      s.kind,
      String(s.points),
      s.kind === 'counter' ? num(s.sum) : '-',
      ...(perOp ? [s.perOp === undefined ? '-' : num(s.perOp)] : []),
      num(s.rate),
      num(s.min),
      num(s.mean),
      num(s.max),
      num(s.last),
    ]),
  )
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

function csvCell(v: unknown): string {
  // Text (series names, labels, event keys) may come from traced programs: a spreadsheet must
  // not run it as a formula.
  const s =
    v === null || v === undefined
      ? ''
      : typeof v === 'string'
        ? neutralizeCsvFormula(v)
        : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** One row per series and per top event key, in one table. */
export function formatReportCsv(r: ReportV1): string {
  const header = [
    'task',
    'tracer',
    'node',
    'record',
    'name',
    'labels',
    'unit',
    'kind',
    'points',
    'sum',
    'min',
    'max',
    'mean',
    'last',
    'rate',
    'count',
    'total_ms',
    'mean_ms',
    'p95_ms',
    'per_op',
  ];
  const rows: unknown[][] = [];
  for (const tr of r.tracers) {
    for (const s of tr.series)
      rows.push([
        r.task.id,
        tr.tracer,
        tr.node,
        'series',
        s.name,
        labelText(s.labels),
        s.unit,
        s.kind,
        s.points,
        s.sum,
        s.min,
        s.max,
        s.mean,
        s.last,
        s.rate,
        '',
        '',
        '',
        '',
        s.perOp ?? '',
      ]);
    for (const e of tr.events.top)
      rows.push([
        r.task.id,
        tr.tracer,
        tr.node,
        'event',
        e.key,
        '',
        'ms',
        'event',
        '',
        '',
        '',
        '',
        '',
        '',
        '',
        e.count,
        e.totalMs,
        e.meanMs,
        e.p95Ms,
        e.perOp ?? '',
      ]);
  }
  return [header, ...rows].map((row) => row.map(csvCell).join(',')).join('\n') + '\n';
}
