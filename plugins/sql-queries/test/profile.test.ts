import { describe, expect, it } from 'vitest';
import { formatProfile, profile } from '../src/profile.js';

describe('profile', () => {
  it('takes calls and times from the digest series, p95 from the events, and ranks by total time', () => {
    const fp = (f: string) => ({ digest: 'd', fingerprint: f, schema: 's' });
    const rows = profile({
      tracer: 'sql-queries',
      series: [
        { name: 'sql.calls', labels: fp('select ?'), sum: 10 },
        { name: 'sql.time', labels: fp('select ?'), sum: 5 },
        { name: 'sql.calls', labels: { ...fp('select ?'), schema: 'other' }, sum: 2 },
        { name: 'sql.time', labels: { ...fp('select ?'), schema: 'other' }, sum: 1 },
        { name: 'sql.calls', labels: fp('update t set v = ?'), sum: 3 },
        { name: 'sql.time', labels: fp('update t set v = ?'), sum: 18 },
        { name: 'sql.rows_examined', labels: fp('update t set v = ?'), sum: 30 },
        { name: 'sql.commands', labels: { command: 'select' }, sum: 12 },
      ],
      events: {
        count: 9,
        top: [{ key: 'select ?', count: 9, totalMs: 4, meanMs: 0.44, p95Ms: 1.5 }],
      },
    });
    expect(rows).toEqual([
      {
        rank: 1,
        fingerprint: 'update t set v = ?',
        calls: 3,
        totalMs: 18,
        meanMs: 6,
        rowsExamined: 30,
        share: 0.75,
      },
      {
        rank: 2,
        fingerprint: 'select ?',
        calls: 12,
        totalMs: 6,
        meanMs: 0.5,
        rowsExamined: 0,
        p95Ms: 1.5,
        share: 0.25,
      },
    ]);
    expect(formatProfile(rows).split('\n')[1]).toMatch(
      /^ +1 +3 +18.00 +75.0% +6.00 +- +30 +update t set v = \?$/,
    );
  });

  it('uses the events alone when there are no digest series (log techniques)', () => {
    const rows = profile({
      tracer: 'sql-queries',
      events: { count: 3, top: [{ key: 'select ?', count: 3, totalMs: 3, meanMs: 1, p95Ms: 2 }] },
    });
    expect(rows).toEqual([
      { rank: 1, fingerprint: 'select ?', calls: 3, totalMs: 3, meanMs: 1, p95Ms: 2, share: 1 },
    ]);
  });
});
