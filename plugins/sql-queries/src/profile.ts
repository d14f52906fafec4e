/**
 * A pt-query-digest style profile from a `scalpels.report/v1` report of this tracer: one row per
 * fingerprint, ranked by total time, with calls, total, mean and p95 milliseconds, rows examined
 * and the share of the total time. Calls and times come from the digest series when the tracer
 * had them (exact server counters), else from the statement events; p95 needs events.
 */

interface ReportSeries {
  name: string;
  labels?: Record<string, string>;
  sum?: number | null;
  max?: number | null;
}

interface ReportTop {
  key: string;
  count: number;
  totalMs: number;
  meanMs: number;
  p95Ms: number;
}

export interface ReportTracer {
  tracer: string;
  plugin?: { package?: string };
  series?: ReportSeries[];
  events?: { count: number; top?: ReportTop[] };
}

export interface ProfileRow {
  rank: number;
  fingerprint: string;
  calls: number;
  totalMs: number;
  meanMs: number;
  p95Ms?: number;
  rowsExamined?: number;
  /** Fraction of the total time of all rows, 0..1. */
  share: number;
}

export function profile(tracer: ReportTracer): ProfileRow[] {
  const rows = new Map<string, Omit<ProfileRow, 'rank' | 'share' | 'meanMs'>>();
  const row = (fp: string) => {
    let r = rows.get(fp);
    if (!r) rows.set(fp, (r = { fingerprint: fp, calls: 0, totalMs: 0 }));
    return r;
  };
  const fromSeries = new Set<string>();
  for (const s of tracer.series ?? []) {
    const fp = s.labels?.fingerprint;
    if (fp === undefined) continue;
    const sum = s.sum ?? 0;
    if (s.name === 'sql.calls') {
      row(fp).calls += sum;
      fromSeries.add(fp);
    } else if (s.name === 'sql.time') row(fp).totalMs += sum;
    else if (s.name === 'sql.rows_examined')
      row(fp).rowsExamined = (row(fp).rowsExamined ?? 0) + sum;
  }
  for (const e of tracer.events?.top ?? []) {
    const r = row(e.key);
    if (!fromSeries.has(e.key)) {
      r.calls = e.count;
      r.totalMs = e.totalMs;
    }
    r.p95Ms = e.p95Ms;
  }
  // Digest series leave out zero increments: a digest without rows examined read none.
  for (const fp of fromSeries) row(fp).rowsExamined ??= 0;
  const total = [...rows.values()].reduce((a, r) => a + r.totalMs, 0);
  return [...rows.values()]
    .sort(
      (a, b) =>
        b.totalMs - a.totalMs || b.calls - a.calls || a.fingerprint.localeCompare(b.fingerprint),
    )
    .map((r, i) => ({
      rank: i + 1,
      ...r,
      meanMs: r.calls > 0 ? r.totalMs / r.calls : 0,
      share: total > 0 ? r.totalMs / total : 0,
    }));
}

const num = (v: number | undefined): string =>
  v === undefined ? '-' : v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toPrecision(3);

export function formatProfile(rows: readonly ProfileRow[]): string {
  const head = [
    'rank',
    'calls',
    'total ms',
    'share',
    'mean ms',
    'p95 ms',
    'rows exam.',
    'fingerprint',
  ];
  const body = rows.map((r) => [
    String(r.rank),
    String(r.calls),
    num(r.totalMs),
    `${(r.share * 100).toFixed(1)}%`,
    num(r.meanMs),
    num(r.p95Ms),
    r.rowsExamined === undefined ? '-' : String(r.rowsExamined),
    r.fingerprint,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padStart(widths[i]!))).join('  ');
  return [line(head), ...body.map(line)].join('\n');
}
