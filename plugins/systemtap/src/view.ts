import type { ReportView } from '@scalpels/core';

/** The bundled scripts' tables, then what a user script declared (series and key). */
export const view: ReportView = {
  title: 'SystemTap',
  headline: [
    { label: 'syscalls (stap)', series: 'systemtap.syscalls' },
    { label: 'Python calls (stap)', series: 'systemtap.python_calls' },
  ],
  tables: [
    {
      title: 'System calls',
      key: ['syscall'],
      columns: [{ label: 'calls', series: 'systemtap.syscalls' }],
    },
    {
      title: 'Python functions',
      key: ['function'],
      columns: [{ label: 'calls', series: 'systemtap.python_calls' }],
    },
    {
      title: 'Script counters',
      key: ['series', 'key'],
      columns: [{ label: 'total', series: 'systemtap.counter' }],
    },
    {
      title: 'Script gauges',
      key: ['series', 'key'],
      columns: [
        { label: 'mean', series: 'systemtap.gauge', of: 'mean' },
        { label: 'peak', series: 'systemtap.gauge', of: 'peak' },
      ],
      rank: ['peak'],
    },
    {
      title: 'Script histograms',
      key: ['series', 'unit'],
      columns: [
        { label: 'count', series: 'systemtap.histogram' },
        { label: 'p50', series: 'systemtap.histogram', of: 'p50' },
        { label: 'p95', series: 'systemtap.histogram', of: 'p95' },
        { label: 'p99', series: 'systemtap.histogram', of: 'p99' },
      ],
    },
  ],
  histograms: { 'systemtap.histogram': { boundUnit: '', cumulative: false } },
};
