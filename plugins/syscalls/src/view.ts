import type { ReportView } from '@scalpels/core';

/** Like `strace -c` and bcc `syscount`: one ranked table, by time when measured, else by count. */
export const view: ReportView = {
  title: 'System calls',
  headline: [
    { label: 'syscalls', series: 'syscalls.calls' },
    { label: 'syscall errors', series: 'syscalls.errors' },
    { label: 'time in syscalls', series: 'syscalls.time' },
  ],
  tables: [
    {
      title: 'System calls',
      key: ['syscall'],
      columns: [
        { label: 'time', series: 'syscalls.time' },
        { label: 'calls', series: 'syscalls.calls' },
        { label: 'errors', series: 'syscalls.errors' },
        { label: 'mean', ratio: ['time', 'calls'] },
        { label: 'p95', series: 'syscalls.latency', of: 'p95' },
      ],
      rank: ['time', 'calls'],
    },
  ],
  histograms: { 'syscalls.latency': { boundUnit: 'ns', cumulative: false } },
};
