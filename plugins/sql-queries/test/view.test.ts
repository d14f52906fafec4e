import { summarize } from '@scalpels/core/testing';
import { describe, expect, it } from 'vitest';
import plugin from '../src/index.js';

type Report = Parameters<typeof summarize>[0];

/** A report of this tracer alone, with the given series and statement events. */
function report(
  series: { name: string; labels: Record<string, string>; sum: number }[],
  top: { key: string; count: number; totalMs: number; p95Ms: number }[],
): Report {
  return {
    format: 'scalpels.report/v1',
    task: {
      id: 't',
      name: 't',
      status: 'stopped',
      startedAt: '2026-01-01T00:00:00.000Z',
      stoppedAt: '2026-01-01T00:00:10.000Z',
      labels: {},
      nodes: ['n'],
      target: null,
    },
    markers: [],
    tracers: [
      {
        id: 1,
        tracer: 'sql-queries',
        plugin: { package: '@scalpels/plugin-sql-queries', version: '0' },
        node: 'n',
        status: 'stopped',
        exitCode: 0,
        records: 1,
        parseErrors: 0,
        dropped: 0,
        technique: null,
        error: null,
        startedAt: null,
        stoppedAt: null,
        series: series.map((s) => ({
          ...s,
          unit: plugin.schema.series[s.name]!.unit,
          kind: plugin.schema.series[s.name]!.kind,
          points: 1,
          min: s.sum,
          max: s.sum,
          mean: s.sum,
          last: s.sum,
          rate: s.sum / 10,
        })),
        events: {
          count: top.reduce((a, e) => a + e.count, 0),
          top: top.map((e) => ({ ...e, meanMs: e.totalMs / e.count, totalValue: 0 })),
        },
      },
    ],
  };
}

const profileOf = (r: Report) => {
  const s = summarize(r, { 'sql-queries': plugin.report });
  const t = s.sections[0]!.tables.find((x) => x.title === 'Profile by fingerprint')!;
  return t.rows.map((row) =>
    Object.fromEntries([
      ['fingerprint', row.key[0]],
      ...t.columns.map((c, i) => [c.label, row.values[i]]),
    ]),
  );
};

describe('the SQL profile view (pt-query-digest style)', () => {
  it('takes calls and times from the digest series, p95 from the events, and ranks by total time', () => {
    const fp = (f: string) => ({ digest: 'd', fingerprint: f, schema: 's' });
    const r = report(
      [
        { name: 'sql.calls', labels: fp('select ?'), sum: 10 },
        { name: 'sql.time', labels: fp('select ?'), sum: 5 },
        { name: 'sql.calls', labels: { ...fp('select ?'), schema: 'other' }, sum: 2 },
        { name: 'sql.time', labels: { ...fp('select ?'), schema: 'other' }, sum: 1 },
        { name: 'sql.calls', labels: fp('update t set v = ?'), sum: 3 },
        { name: 'sql.time', labels: fp('update t set v = ?'), sum: 18 },
        { name: 'sql.rows_examined', labels: fp('update t set v = ?'), sum: 30 },
        { name: 'sql.commands', labels: { command: 'select' }, sum: 12 },
      ],
      [{ key: 'select ?', count: 9, totalMs: 4, p95Ms: 1.5 }],
    );
    expect(profileOf(r)).toEqual([
      {
        fingerprint: 'update t set v = ?',
        time: 18,
        share: 0.75,
        calls: 3,
        mean: 6,
        p95: null,
        'rows examined': 30,
      },
      {
        fingerprint: 'select ?',
        time: 6,
        share: 0.25,
        calls: 12,
        mean: 0.5,
        p95: 1.5,
        'rows examined': null,
      },
    ]);
    const s = summarize(r, { 'sql-queries': plugin.report });
    expect(s.headline.map((f) => [f.label, f.value, f.unit])).toEqual([
      ['SQL statements', 15, 'count'],
      ['SQL time', 24, 'ms'],
      ['rows examined', 30, 'rows'],
    ]);
  });

  it('uses the events alone when there are no digest series (log techniques)', () => {
    expect(profileOf(report([], [{ key: 'select ?', count: 3, totalMs: 3, p95Ms: 2 }]))).toEqual([
      { fingerprint: 'select ?', time: 3, share: 1, calls: 3, mean: 1, p95: 2 },
    ]);
  });
});
