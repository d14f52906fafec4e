import type { ReportView } from '@scalpels/core';

/** Functions by calls (the question is usually "how many per operation"), with times when measured. */
export const view: ReportView = {
  title: 'Python functions',
  headline: [
    { label: 'Python calls', series: 'python.calls' },
    { label: 'Python exceptions', series: 'python.exceptions' },
  ],
  tables: [
    {
      title: 'Functions, by calls',
      key: ['function'],
      columns: [
        { label: 'calls', series: 'python.calls' },
        { label: 'time (incl.)', series: 'python.call.time' },
        { label: 'mean', ratio: ['time (incl.)', 'calls'] },
        { label: 'p95', series: 'python.call.duration', of: 'p95' },
        { label: 'exceptions', series: 'python.exceptions' },
      ],
    },
  ],
  histograms: { 'python.call.duration': { boundUnit: 'ms', cumulative: true } },
};
