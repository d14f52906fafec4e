import type { SeriesKind } from '../api.js';
import { buildReport, type ReportV1 } from '../report.js';
import type { SeriesRangeSummary, Store, TaskRow } from '../store/types.js';
import { table } from '../table.js';
import { escapeControl } from '../text-safety.js';
import { humanize } from '../units.js';
import { sig } from './format.js';

/** The comparison format name (`scalpels compare --format json`). */
export const COMPARE_FORMAT = 'scalpels.compare/v1';

/**
 * Labels that name one run's processes: two runs of the same workload have other pids, so series
 * are matched with these left out (counters summed, gauge means summed over the processes).
 */
const RUN_LABELS = new Set(['pid']);

export interface CompareSide {
  points: number;
  /** Counters: total over the task. Gauges: mean level (summed over processes). */
  value: number;
  /** Counters: per second over the tracer's run. */
  rate: number | null;
  /** Counters and histogram buckets, with `--ops`: value / the task's operations (extra field). */
  perOp?: number;
}

export interface CompareSeriesRow {
  tracer: string;
  name: string;
  labels: Record<string, string>;
  unit: string;
  kind: SeriesKind;
  a: CompareSide | null;
  b: CompareSide | null;
  delta: number | null;
  /** b / a; null when a is 0 or a side is missing. */
  ratio: number | null;
  rateRatio: number | null;
  /**
   * Standard deviation of the delta expected from interval-to-interval noise, estimated from the
   * spread of the per-interval samples of both runs; null when a run has fewer than 3 points.
   */
  noise: number | null;
  /**
   * The delta is larger than 3 noise deviations and than 5% of A (null when the noise cannot be
   * estimated).
   */
  significant: boolean | null;
  /** With `--ops`: B's per-operation value minus A's (counters and histogram buckets). */
  deltaPerOp?: number | null;
}

export interface CompareEventRow {
  tracer: string;
  key: string;
  a: { count: number; totalMs: number; meanMs: number; p95Ms: number } | null;
  b: { count: number; totalMs: number; meanMs: number; p95Ms: number } | null;
  countRatio: number | null;
  totalMsRatio: number | null;
}

export interface Comparison {
  format: typeof COMPARE_FORMAT;
  /** Operations each task did (`--ops N` or `--ops A,B`): per-operation figures (extra field). */
  ops?: { a: number; b: number };
  a: ReportV1['task'] & { durationS: number };
  b: ReportV1['task'] & { durationS: number };
  series: CompareSeriesRow[];
  events: CompareEventRow[];
}

interface Acc {
  tracer: string;
  name: string;
  labels: Record<string, string>;
  unit: string;
  kind: SeriesKind;
  points: number;
  value: number;
  /** Variance of `value` from the spread of per-interval points. */
  variance: number;
  minPoints: number;
  seconds: number;
}

/** Smallest relative change flagged, however steady the runs (a 1% shift of free memory is not news). */
const MIN_CHANGE = 0.05;

const ratioOf = (b: number, a: number): number | null => (a === 0 ? (b === 0 ? 1 : null) : b / a);

async function sideOf(store: Store, task: TaskRow, report: ReportV1): Promise<Map<string, Acc>> {
  const out = new Map<string, Acc>();
  const rows = await store.listTracers(task.id);
  for (const tr of report.tracers) {
    const row = rows.find((r) => r.id === tr.id);
    const start = row?.startedAt ?? task.startedAt;
    const end = row?.stoppedAt ?? task.stoppedAt ?? Date.now();
    const seconds = Math.max(0.001, (end - start) / 1000);
    const ranged: SeriesRangeSummary[] = store.seriesRange
      ? await store.seriesRange(tr.id, 0, Number.MAX_SAFE_INTEGER)
      : tr.series.map((s) => ({ ...s, sumSquares: NaN }));
    for (const s of ranged) {
      const labels = Object.fromEntries(
        Object.entries(s.labels).filter(([k]) => !RUN_LABELS.has(k)),
      );
      const key = `${tr.tracer}\0${tr.node}\0${s.name}\0${JSON.stringify(labels)}`;
      const n = s.points;
      // Sample variance of the per-interval values.
      const s2 = n >= 3 ? Math.max(0, (s.sumSquares - (s.sum * s.sum) / n) / (n - 1)) : NaN;
      const counter = s.kind !== 'gauge';
      const value = counter ? s.sum : n ? s.sum / n : 0;
      // Counters: variance of a total of n intervals; gauges: variance of the mean.
      const variance = counter ? n * s2 : s2 / n;
      const acc = out.get(key);
      if (acc) {
        acc.points += n;
        acc.value += value;
        acc.variance += variance;
        acc.minPoints = Math.min(acc.minPoints, n);
      } else
        out.set(key, {
          tracer: tr.tracer,
          name: s.name,
          labels,
          unit: s.unit,
          kind: s.kind,
          points: n,
          value,
          variance,
          minPoints: n,
          seconds,
        });
    }
  }
  return out;
}

function header(r: ReportV1, t: TaskRow): Comparison['a'] {
  return {
    ...r.task,
    durationS: ((t.stoppedAt ?? Date.now()) - t.startedAt) / 1000,
  };
}

/** Compares two tasks series by series and key by key, from store aggregates. */
export async function compareTasks(
  store: Store,
  taskA: TaskRow,
  taskB: TaskRow,
  opts: { top?: number; ops?: { a: number; b: number } } = {},
): Promise<Comparison> {
  const ops = opts.ops;
  const [ra, rb] = await Promise.all([
    buildReport(store, taskA, { top: opts.top ?? 100 }),
    buildReport(store, taskB, { top: opts.top ?? 100 }),
  ]);
  const [sa, sb] = await Promise.all([sideOf(store, taskA, ra), sideOf(store, taskB, rb)]);
  const series: CompareSeriesRow[] = [];
  for (const key of new Set([...sa.keys(), ...sb.keys()])) {
    const a = sa.get(key);
    const b = sb.get(key);
    const any = (a ?? b)!;
    if ((a?.value ?? 0) === 0 && (b?.value ?? 0) === 0) continue;
    const side = (x: Acc | undefined, n: number | undefined): CompareSide | null =>
      x
        ? {
            points: x.points,
            value: x.value,
            rate: x.kind === 'gauge' ? null : x.value / x.seconds,
            ...(n && x.kind !== 'gauge' ? { perOp: x.value / n } : {}),
          }
        : null;
    const A = side(a, ops?.a);
    const B = side(b, ops?.b);
    const delta = A && B ? B.value - A.value : null;
    const noise =
      a && b && a.minPoints >= 3 && b.minPoints >= 3 && Number.isFinite(a.variance + b.variance)
        ? Math.sqrt(a.variance + b.variance)
        : null;
    series.push({
      tracer: any.tracer,
      name: any.name,
      labels: any.labels,
      unit: any.unit,
      kind: any.kind,
      a: A,
      b: B,
      delta,
      ratio: A && B ? ratioOf(B.value, A.value) : null,
      rateRatio: A?.rate != null && B?.rate != null ? ratioOf(B.rate, A.rate) : null,
      noise,
      significant:
        noise === null || delta === null
          ? null
          : Math.abs(delta) > 3 * noise && Math.abs(delta) > MIN_CHANGE * Math.abs(A!.value),
      ...(ops && any.kind !== 'gauge' ? { deltaPerOp: A && B ? B.perOp! - A.perOp! : null } : {}),
    });
  }
  // Biggest changes first: the delta's share of everything its series name did in both runs
  // (a series only one run has counts in full), so 40k more getppid calls outrank 1 → 2 clones.
  const groupTotal = new Map<string, number>();
  const change = (r: CompareSeriesRow): number => r.delta ?? (r.b?.value ?? 0) - (r.a?.value ?? 0);
  for (const r of series) {
    const k = `${r.tracer}\0${r.name}`;
    groupTotal.set(
      k,
      (groupTotal.get(k) ?? 0) + Math.abs(r.a?.value ?? 0) + Math.abs(r.b?.value ?? 0),
    );
  }
  const weight = (r: CompareSeriesRow): number =>
    Math.abs(change(r)) / (groupTotal.get(`${r.tracer}\0${r.name}`) || 1);
  series.sort(
    (x, y) =>
      x.tracer.localeCompare(y.tracer) ||
      Number(y.significant === true) - Number(x.significant === true) ||
      weight(y) - weight(x) ||
      x.name.localeCompare(y.name),
  );
  const events: CompareEventRow[] = [];
  const evA = new Map<string, CompareEventRow['a']>();
  const evB = new Map<string, CompareEventRow['b']>();
  for (const tr of ra.tracers) for (const e of tr.events.top) evA.set(`${tr.tracer}\0${e.key}`, e);
  for (const tr of rb.tracers) for (const e of tr.events.top) evB.set(`${tr.tracer}\0${e.key}`, e);
  for (const key of new Set([...evA.keys(), ...evB.keys()])) {
    const [tracer, k] = key.split('\0') as [string, string];
    const a = evA.get(key) ?? null;
    const b = evB.get(key) ?? null;
    const pick = (e: typeof a) =>
      e && { count: e.count, totalMs: e.totalMs, meanMs: e.meanMs, p95Ms: e.p95Ms };
    events.push({
      tracer,
      key: k,
      a: pick(a),
      b: pick(b),
      countRatio: a && b ? ratioOf(b.count, a.count) : null,
      totalMsRatio: a && b ? ratioOf(b.totalMs, a.totalMs) : null,
    });
  }
  events.sort(
    (x, y) =>
      x.tracer.localeCompare(y.tracer) ||
      Math.max(y.a?.totalMs ?? 0, y.b?.totalMs ?? 0) -
        Math.max(x.a?.totalMs ?? 0, x.b?.totalMs ?? 0),
  );
  return {
    format: COMPARE_FORMAT,
    ...(ops ? { ops } : {}),
    a: header(ra, taskA),
    b: header(rb, taskB),
    series,
    events,
  };
}

const labelText = (l: Record<string, string>): string =>
  Object.entries(l)
    .map(([k, v]) => `${k}=${v}`)
    .join(',') || '-';

export const ratioText = (r: number | null): string =>
  r === null ? '-' : `${r >= 10 ? r.toFixed(0) : r.toFixed(2)}x`;

export function formatCompareTable(c: Comparison, opts: { rows?: number } = {}): string {
  const max = opts.rows ?? 40;
  const ops = c.ops;
  const out = [
    `A: ${c.a.id} "${escapeControl(c.a.name)}" ${sig(c.a.durationS)} s${ops ? `, ${ops.a} operations` : ''}`,
    `B: ${c.b.id} "${escapeControl(c.b.name)}" ${sig(c.b.durationS)} s${ops ? `, ${ops.b} operations` : ''}`,
    'counters compare totals over the task, gauges their mean, histograms their bucket counts; ! = change beyond 3 standard deviations of the interval-to-interval noise, ~ = within it, blank = noise unknown (fewer than 3 points)' +
      (ops ? '; counters and buckets per operation' : ''),
  ];
  for (const tracer of [...new Set(c.series.map((s) => s.tracer))]) {
    const rows = c.series.filter((s) => s.tracer === tracer);
    out.push(
      '',
      `tracer ${tracer}: ${rows.length} series${rows.length > max ? ` (first ${max})` : ''}`,
    );
    // A histogram's value is a bucket count, whatever unit its bounds are in.
    const unitOf = (s: CompareSeriesRow): string => (s.kind === 'histogram' ? 'count' : s.unit);
    const perOp = (s: CompareSeriesRow): boolean => ops !== undefined && s.kind !== 'gauge';
    const val = (s: CompareSeriesRow, x: CompareSide | null): string =>
      x ? humanize(perOp(s) ? (x.perOp ?? null) : x.value, unitOf(s)) : '-';
    out.push(
      table(
        [
          '',
          'series',
          'labels',
          'unit',
          'kind',
          ops ? 'A (/op)' : 'A',
          ops ? 'B (/op)' : 'B',
          'delta',
          'B/A',
        ],
        rows.slice(0, max).map((s) => {
          const d = perOp(s) ? (s.deltaPerOp ?? null) : s.delta;
          return [
            s.significant === true ? '!' : s.significant === false ? '~' : ' ',
            s.name,
            labelText(s.labels),
            unitOf(s),
            s.kind,
            val(s, s.a),
            val(s, s.b),
            d === null ? '-' : `${d > 0 ? '+' : ''}${humanize(d, unitOf(s))}`,
            s.a && s.b
              ? ratioText(perOp(s) && s.a.perOp ? s.b.perOp! / s.a.perOp : s.ratio)
              : s.a
                ? 'gone'
                : 'new',
          ];
        }),
      )
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n'),
    );
  }
  if (c.events.length) {
    for (const tracer of [...new Set(c.events.map((e) => e.tracer))]) {
      const rows = c.events.filter((e) => e.tracer === tracer).slice(0, max);
      out.push('', `events of ${tracer}`);
      out.push(
        table(
          ['count A', 'count B', 'B/A', 'total ms A', 'total ms B', 'B/A', 'key'],
          rows.map((e) => [
            e.a ? String(e.a.count) : '-',
            e.b ? String(e.b.count) : '-',
            e.a && e.b ? ratioText(e.countRatio) : e.a ? 'gone' : 'new',
            e.a ? sig(e.a.totalMs) : '-',
            e.b ? sig(e.b.totalMs) : '-',
            e.a && e.b ? ratioText(e.totalMsRatio) : '-',
            e.key,
          ]),
        )
          .split('\n')
          .map((l) => `  ${l}`)
          .join('\n'),
      );
    }
  }
  return `${out.join('\n')}\n`;
}
