import type { SeriesKind } from '../api.js';
import type { Marker, SeriesTimeline, Store, TaskRow, TimelineBucket } from '../store/types.js';
import type { ReportV1 } from '../report.js';

/** One line of a chart: [time ms, value] points, in time order. */
export interface ChartLine {
  label: string;
  labels: Record<string, string>;
  points: [number, number][];
  /** Counters: total over the task; gauges: highest bucket mean. What lines are ranked by. */
  weight: number;
}

/** One timeline chart: a series name of one tracer, one line per label set (the hottest ones). */
export interface Chart {
  tracer: string;
  tracerId: number;
  name: string;
  kind: SeriesKind;
  /** Unit of the plotted values: counters are plotted as rates (`ms/s`, `bytes/s`, `count/s`). */
  unit: string;
  stepMs: number;
  lines: ChartLine[];
  /** Label sets not drawn: summed into an "other" line (counters) or left out (gauges). */
  folded: number;
  /** Label sets whose points are all zero (left out). */
  zero: number;
}

/** A breakdown of a counter over a label set (for example syscalls.calls by syscall). */
export interface TopTable {
  tracer: string;
  name: string;
  unit: string;
  by: string[];
  rows: { key: string; sum: number; rate: number; share: number }[];
  total: number;
  more: number;
}

export interface Phase {
  label: string;
  from: number;
  to: number;
  /** Per tracer and series name: the counter total within the phase. */
  totals: { tracer: string; name: string; unit: string; sum: number }[];
}

export interface ReportTimeline {
  from: number;
  to: number;
  markers: Marker[];
  charts: Chart[];
  tops: TopTable[];
  phases: Phase[];
}

export interface TimelineOptions {
  /** Buckets across the task's span (default 150). */
  buckets?: number;
  /** Lines per chart (default 6). */
  maxLines?: number;
  /** Rows per top table (default 15). */
  topRows?: number;
  now?: number;
}

/** Labels that only identify a process: a breakdown drops them when something else is left. */
const PROCESS_LABELS = new Set(['pid', 'comm']);

/** Hash-like values (a digest, an id): shown only when nothing else tells the series apart. */
const HASHY = /^[0-9a-f]{16,}$/i;

/**
 * The labels worth showing: those that vary, without hash-like ones (SQL digests) when the others
 * still tell every series apart.
 */
function telling(all: Record<string, string>[], keys: string[]): string[] {
  const hashy = keys.filter((k) => all.every((l) => l[k] === undefined || HASHY.test(l[k]!)));
  if (!hashy.length) return keys;
  const rest = keys.filter((k) => !hashy.includes(k));
  const key = (l: Record<string, string>) => JSON.stringify(rest.map((k) => l[k]));
  return rest.length &&
    new Set(all.map(key)).size ===
      new Set(all.map((l) => JSON.stringify(keys.map((k) => l[k])))).size
    ? rest
    : keys;
}

const labelKey = (labels: Record<string, string>, keys?: string[]): string =>
  (keys ?? Object.keys(labels))
    .filter((k) => k in labels)
    .map((k) => `${k}=${labels[k]}`)
    .join(' ');

/**
 * Everything the HTML report draws beyond the summary: bucketed series from the store (SQL
 * GROUP BY over the samples index), markers, label breakdowns and phases between markers.
 */
export async function buildTimeline(
  store: Store,
  task: TaskRow,
  report: ReportV1,
  opts: TimelineOptions = {},
): Promise<ReportTimeline> {
  // A store without time queries still gets the tables (charts need a store that has them).
  const timeline = store.seriesTimeline?.bind(store);
  const now = opts.now ?? Date.now();
  const from = task.startedAt;
  const to = Math.max(from + 1, task.stoppedAt ?? now);
  const span = to - from;
  const maxLines = opts.maxLines ?? 6;
  const markers = store.listMarkers ? await store.listMarkers(task.id) : [];
  const charts: Chart[] = [];
  const tops: TopTable[] = [];
  const tracerRows = await store.listTracers(task.id);
  for (const tr of report.tracers) {
    if (tr.series.length === 0) continue;
    const row = tracerRows.find((r) => r.id === tr.id);
    const tStart = row?.startedAt ?? from;
    const tEnd = row?.stoppedAt ?? to;
    // Sampling interval: the tracer's `interval` option (milliseconds) when it has one, else the
    // tracer's running time over its densest series' points.
    const maxPoints = Math.max(1, ...tr.series.map((s) => s.points));
    const option = row?.options.interval;
    const interval =
      typeof option === 'number' && option > 0 ? option : (tEnd - tStart) / maxPoints;
    // Buckets of a whole number of sampling intervals, starting half an interval before the
    // first point: each bucket holds the same number of samples, so rates do not saw-tooth.
    const per = Math.max(1, Math.round(span / (opts.buckets ?? 150) / interval));
    const step = Math.max(1, Math.round(interval * per));
    const first = (await store.tracerSpan?.(tr.id))?.first;
    const origin = first === undefined ? from : Math.round(first - interval / 2);
    const timelines = timeline ? await timeline(tr.id, origin, step) : [];
    const groups = new Map<string, SeriesTimeline[]>();
    for (const t of timelines) {
      let g = groups.get(t.name);
      if (!g) groups.set(t.name, (g = []));
      g.push(t);
    }
    // The traced processes' series first (they carry pid/comm), then the node's, by name.
    const perProcess = (g: SeriesTimeline[]): boolean =>
      g.some((t) => 'pid' in t.labels || 'comm' in t.labels);
    const ordered = [...groups].sort(
      ([a, ga], [b, gb]) => Number(perProcess(gb)) - Number(perProcess(ga)) || a.localeCompare(b),
    );
    for (const [name, series] of ordered) {
      const kind = series[0]!.kind;
      if (kind === 'histogram') continue;
      charts.push(chartOf(tr.tracer, tr.id, name, series, step, maxLines));
    }
    // Breakdowns of counters over their labels, from the store's per-series totals.
    const byName = new Map<string, typeof tr.series>();
    for (const s of tr.series)
      if (s.kind === 'counter') {
        let g = byName.get(s.name);
        if (!g) byName.set(s.name, (g = []));
        g.push(s);
      }
    const seconds = Math.max(0.001, (tEnd - tStart) / 1000);
    for (const [name, series] of byName) {
      const top = topTable(tr.tracer, name, series, seconds, opts.topRows ?? 15);
      if (top) tops.push(top);
    }
  }
  const phases = report.phases
    ? report.phases.map((p) => ({ ...p, from: Date.parse(p.from), to: Date.parse(p.to) }))
    : markers.length && store.seriesRange
      ? await phasesOf(store, report, from, to, markers)
      : [];
  return { from, to, markers, charts, tops, phases };
}

function chartOf(
  tracer: string,
  tracerId: number,
  name: string,
  series: SeriesTimeline[],
  step: number,
  maxLines: number,
): Chart {
  const kind = series[0]!.kind;
  const counter = kind === 'counter';
  const perSecond = 1000 / step;
  const merged = counter && series.length > maxLines ? mergeProcesses(series) : undefined;
  if (merged) series = merged;
  // Labels equal across the whole group say nothing on a legend.
  const varying = new Set<string>();
  for (const s of series)
    for (const [k, v] of Object.entries(s.labels))
      if (series.some((o) => o.labels[k] !== v)) varying.add(k);
  const legendKeys = new Set(
    telling(
      series.map((s) => s.labels),
      [...varying],
    ),
  );
  const lines: ChartLine[] = [];
  let zero = 0;
  for (const s of series) {
    if (s.buckets.every((b) => b.sum === 0 && b.max === 0 && b.min === 0)) {
      zero++;
      continue;
    }
    const points = s.buckets.map((b): [number, number] => [
      b.ts + step / 2,
      counter ? b.sum * perSecond : b.sum / b.count,
    ]);
    const weight = counter
      ? s.buckets.reduce((a, b) => a + b.sum, 0)
      : Math.max(...points.map((p) => p[1]));
    const shown = Object.fromEntries(Object.entries(s.labels).filter(([k]) => legendKeys.has(k)));
    lines.push({ label: labelKey(shown) || name, labels: s.labels, points, weight });
  }
  lines.sort((a, b) => b.weight - a.weight || a.label.localeCompare(b.label));
  const kept = lines.slice(0, maxLines);
  const rest = lines.slice(maxLines);
  if (rest.length && counter) {
    const sums = new Map<number, number>();
    for (const l of rest) for (const [t, v] of l.points) sums.set(t, (sums.get(t) ?? 0) + v);
    kept.push({
      label: `other (${rest.length} series)`,
      labels: {},
      points: [...sums.entries()].sort((a, b) => a[0] - b[0]),
      weight: rest.reduce((a, l) => a + l.weight, 0),
    });
  }
  const unit = series[0]!.unit;
  return {
    tracer,
    tracerId,
    name,
    kind,
    unit: counter ? `${unit}/s` : unit,
    stepMs: step,
    lines: kept,
    folded: rest.length,
    zero,
  };
}

/**
 * Counters of many processes (syscalls per pid and call, files per pid and path): one line per
 * value of the other labels (per call, per path), summed over the processes, when that leaves at
 * least two lines. Undefined when the labels do not allow it.
 */
function mergeProcesses(series: SeriesTimeline[]): SeriesTimeline[] | undefined {
  const keys = [...new Set(series.flatMap((s) => Object.keys(s.labels)))];
  const by = keys.filter((k) => !PROCESS_LABELS.has(k));
  if (by.length === keys.length || by.length === 0) return undefined;
  const groups = new Map<
    string,
    { labels: Record<string, string>; sums: Map<number, TimelineBucket> }
  >();
  for (const s of series) {
    const labels = Object.fromEntries(
      by.filter((k) => k in s.labels).map((k) => [k, s.labels[k]!]),
    );
    const key = JSON.stringify(labels);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { labels, sums: new Map() }));
    for (const b of s.buckets) {
      const e = g.sums.get(b.ts);
      if (e) {
        e.sum += b.sum;
        e.count += b.count;
        e.min = Math.min(e.min, b.min);
        e.max = Math.max(e.max, b.max);
      } else g.sums.set(b.ts, { ...b });
    }
  }
  if (groups.size < 2) return undefined;
  return [...groups.values()].map((g) => ({
    ...series[0]!,
    labels: g.labels,
    buckets: [...g.sums.values()].sort((a, b) => a.ts - b.ts),
  }));
}

function topTable(
  tracer: string,
  name: string,
  series: ReportV1['tracers'][number]['series'],
  seconds: number,
  maxRows: number,
): TopTable | undefined {
  const keys = [...new Set(series.flatMap((s) => Object.keys(s.labels)))];
  const nonProcess = keys.filter((k) => !PROCESS_LABELS.has(k));
  const distinct = (ks: string[]) => new Set(series.map((s) => labelKey(s.labels, ks))).size;
  const by = telling(
    series.map((s) => s.labels),
    nonProcess.length && distinct(nonProcess) >= 2 ? nonProcess : keys,
  );
  const sums = new Map<string, number>();
  for (const s of series) {
    const k = labelKey(s.labels, by) || '(no labels)';
    sums.set(k, (sums.get(k) ?? 0) + s.sum);
  }
  const rows = [...sums.entries()].filter(([, v]) => v !== 0).sort((a, b) => b[1] - a[1]);
  if (rows.length < 3) return undefined;
  const total = rows.reduce((a, [, v]) => a + v, 0);
  return {
    tracer,
    name,
    unit: series[0]!.unit,
    by,
    rows: rows.slice(0, maxRows).map(([key, sum]) => ({
      key,
      sum,
      rate: sum / seconds,
      share: total ? sum / total : 0,
    })),
    total,
    more: Math.max(0, rows.length - maxRows),
  };
}

/** Counter totals per series name between consecutive markers (SQL range aggregates). */
export async function phasesOf(
  store: Store,
  report: Pick<ReportV1, 'tracers'>,
  from: number,
  to: number,
  markers: Marker[],
): Promise<Phase[]> {
  const bounds: { label: string; from: number; to: number }[] = [];
  let start = from;
  let label = '(start)';
  for (const m of markers) {
    if (m.ts > start) bounds.push({ label, from: start, to: m.ts });
    start = Math.max(start, m.ts);
    label = m.text;
  }
  bounds.push({ label, from: start, to: Math.max(to, start + 1) });
  const phases: Phase[] = [];
  for (const [i, b] of bounds.entries()) {
    const totals: Phase['totals'] = [];
    // The first and last phases take the points stamped before the task's start or after its end.
    const qFrom = i === 0 ? 0 : b.from;
    const qTo = i === bounds.length - 1 ? Number.MAX_SAFE_INTEGER : b.to;
    for (const tr of report.tracers) {
      const rows = await store.seriesRange!(tr.id, qFrom, qTo);
      const byName = new Map<string, { unit: string; sum: number }>();
      for (const r of rows) {
        if (r.kind !== 'counter') continue;
        const e = byName.get(r.name) ?? { unit: r.unit, sum: 0 };
        e.sum += r.sum;
        byName.set(r.name, e);
      }
      for (const [name, e] of byName) totals.push({ tracer: tr.tracer, name, ...e });
    }
    phases.push({ ...b, totals });
  }
  return phases;
}
