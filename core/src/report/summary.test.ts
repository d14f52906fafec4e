import { describe, expect, it } from 'vitest';
import type { ReportView } from '../api.js';
import type { ReportSeries, ReportV1 } from '../report.js';
import { humanize } from '../units.js';
import { formatSummaryText, quantile, summarize } from './summary.js';

// The summary's arithmetic on a small report (the real runs are in test/report-summary.test.ts).

const series = (
  name: string,
  kind: ReportSeries['kind'],
  unit: string,
  labels: Record<string, string>,
  sum: number,
  max = sum,
): ReportSeries => ({
  name,
  unit,
  kind,
  labels,
  points: 1,
  sum,
  min: 0,
  max,
  mean: sum,
  last: sum,
  rate: kind === 'counter' ? sum / 10 : null,
});

function report(s: ReportSeries[], node = 'n', tracer = 'third-party'): ReportV1 {
  return {
    format: 'scalpels.report/v1',
    task: {
      id: 't',
      name: 'x',
      status: 'stopped',
      startedAt: '2026-01-01T00:00:00.000Z',
      stoppedAt: '2026-01-01T00:00:10.000Z',
      labels: {},
      nodes: [node],
      target: null,
    },
    markers: [],
    tracers: [
      {
        id: 1,
        tracer,
        plugin: { package: 'scalpels-plugin-x', version: '1.0.0' },
        node,
        status: 'stopped',
        exitCode: 0,
        records: s.length,
        parseErrors: 0,
        dropped: 0,
        technique: null,
        error: null,
        startedAt: null,
        stoppedAt: null,
        series: s,
        events: { count: 0, top: [] },
      },
    ],
  };
}

const view: ReportView = {
  title: 'Widgets',
  headline: [
    { label: 'widgets', series: ['w.made', 'w.bought'] },
    { label: 'peak stock', series: 'w.stock' },
    { label: 'p95 wait', series: 'w.wait', of: 'p95' },
  ],
  tables: [
    {
      title: 'By colour',
      key: ['colour'],
      columns: [
        { label: 'time', series: 'w.time' },
        { label: 'made', series: 'w.made' },
        { label: 'mean', ratio: ['time', 'made'] },
        { label: 'share', share: 'made' },
        { label: 'p50 wait', series: 'w.wait', of: 'p50' },
      ],
      rank: ['time', 'made'],
    },
  ],
  histograms: { 'w.wait': { boundUnit: 'ms', cumulative: true } },
};

const data = [
  series('w.made', 'counter', 'count', { colour: 'red' }, 30),
  series('w.made', 'counter', 'count', { colour: 'blue' }, 10),
  series('w.made', 'counter', 'count', { colour: 'green' }, 0),
  series('w.bought', 'counter', 'count', { colour: 'red' }, 2),
  series('w.stock', 'gauge', 'count', {}, 5, 17),
  // Cumulative buckets: 10 within 1 ms, 40 within 10 ms, all 40 within +Inf.
  series('w.wait', 'histogram', 'ms', { colour: 'red', le: '1' }, 10),
  series('w.wait', 'histogram', 'ms', { colour: 'red', le: '10' }, 40),
  series('w.wait', 'histogram', 'ms', { colour: 'red', le: '+Inf' }, 40),
];

describe('summarize', () => {
  it('applies a view: headline sums and peaks, quantiles from buckets, ranked rows without zero ones, derived columns, per-op figures', () => {
    const s = summarize(report(data), { 'third-party': view }, { ops: 4 });
    expect(s.headline).toEqual([
      { tracer: 'third-party', label: 'widgets', value: 42, unit: 'count', perOp: 10.5 },
      { tracer: 'third-party', label: 'peak stock', value: 17, unit: 'count', perOp: null },
      { tracer: 'third-party', label: 'p95 wait', value: 10, unit: 'ms', perOp: null },
    ]);
    const t = s.sections[0]!.tables[0]!;
    expect(s.sections[0]!.title).toBe('Widgets');
    // No time series: ranked by the next column; columns without any value left out.
    expect(t.columns.map((c) => c.label)).toEqual(['made', 'share', 'p50 wait']);
    expect(t.columns[t.rankedBy]!.label).toBe('made');
    expect(t.rows).toEqual([
      { key: ['red'], values: [30, 0.75, 10] },
      { key: ['blue'], values: [10, 0.25, null] },
    ]);
    expect(formatSummaryText({ ...report(data), summary: s })).toMatch(
      /^ {2}widgets +42 +10\.5\/op +third-party$/m,
    );
  });

  it('a tracer without a view gets the generic one: counters by total, gauges min/mean/max, histograms p50/p95/p99', () => {
    const s = summarize(report(data), {});
    expect(s.sections[0]!.title).toBe('third-party');
    expect(s.sections[0]!.tables.map((t) => t.title)).toEqual(['Counters', 'Gauges', 'Histograms']);
    const counters = s.sections[0]!.tables[0]!;
    expect(counters.rows.map((r) => r.key[1])).toEqual(['colour=red', 'colour=blue', 'colour=red']);
    expect(counters.rows).toHaveLength(3); // the all-zero green series is hidden
    const h = s.sections[0]!.tables[2]!;
    // Detected as cumulative: 40 in all, p50 within 10 ms.
    expect(h.rows[0]!.values).toEqual([40, 10, 10, 10]);
    expect(s.sections[0]!.zeroSeries).toBe(1);
  });

  it('limits rows to --top and counts the others', () => {
    const many = Array.from({ length: 15 }, (_, i) =>
      series('w.made', 'counter', 'count', { colour: `c${i}` }, i + 1),
    );
    const t = summarize(report(many), { 'third-party': view }, { top: 3 }).sections[0]!.tables[0]!;
    expect(t.rows.map((r) => r.key[0])).toEqual(['c14', 'c13', 'c12']);
    expect(t.more).toBe(12);
  });
});

describe('quantile', () => {
  it('reads the bucket bound that holds the quantile, per-bucket or cumulative', () => {
    const perBucket = new Map([
      ['1024', 90],
      ['2048', 9],
      ['4096', 1],
    ]);
    expect(quantile(perBucket, 0.5, false)).toBe(1024);
    expect(quantile(perBucket, 0.95, false)).toBe(2048);
    expect(quantile(perBucket, 0.999, false)).toBe(4096);
    expect(quantile(new Map([['+Inf', 0]]), 0.5, true)).toBeNull();
  });
});

describe('humanize', () => {
  it('scales bytes, times and counts for people', () => {
    expect(humanize(794624, 'bytes')).toBe('776 KiB');
    expect(humanize(1101914, 'count')).toBe('1.1M');
    expect(humanize(612, 'count')).toBe('612');
    expect(humanize(1620, 'ms')).toBe('1.62 s');
    expect(humanize(0.0042, 'ms')).toBe('4.2 µs');
    expect(humanize(350, 'ns')).toBe('350 ns');
    expect(humanize(2.5, 'ms/s')).toBe('2.5 ms/s');
    expect(humanize(0.123, 'fraction')).toBe('12.3%');
    expect(humanize(12_300, 'rows')).toBe('12.3k rows');
    expect(humanize(null, 'ms')).toBe('-');
  });
});
