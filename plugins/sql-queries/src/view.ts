import type { ReportView } from '@scalpels/core';

/**
 * A pt-query-digest profile: one row per fingerprint ranked by total time, with its share, calls,
 * mean, p95 (from statement events, events=true) and rows examined. Calls and times come from
 * the digest series when the tracer had them (exact server counters), else from the events.
 */
export const view: ReportView = {
  title: 'SQL profile',
  headline: [
    { label: 'SQL statements', series: 'sql.calls' },
    { label: 'SQL time', series: 'sql.time' },
    { label: 'rows examined', series: 'sql.rows_examined' },
    { label: 'SQL errors', series: 'sql.errors' },
  ],
  tables: [
    {
      title: 'Profile by fingerprint',
      key: ['fingerprint'],
      events: true,
      columns: [
        { label: 'time', series: 'sql.time', event: 'totalMs', unit: 'ms' },
        { label: 'share', share: 'time' },
        { label: 'calls', series: 'sql.calls', event: 'count', unit: 'count' },
        { label: 'mean', ratio: ['time', 'calls'], unit: 'ms' },
        { label: 'p95', event: 'p95Ms', unit: 'ms' },
        { label: 'rows examined', series: 'sql.rows_examined' },
        { label: 'errors', series: 'sql.errors' },
      ],
      rank: ['time', 'calls'],
    },
    {
      title: 'Commands',
      key: ['command'],
      columns: [{ label: 'count', series: 'sql.commands' }],
    },
  ],
};
