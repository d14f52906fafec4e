import type { ReportView } from '@scalpels/core';

const BYTES = ['fs.read.bytes', 'fs.write.bytes'] as const;

/** The hottest files by bytes (then by operations), and per process with the proc-io technique. */
export const view: ReportView = {
  title: 'File I/O',
  headline: [
    { label: 'file bytes read', series: 'fs.read.bytes' },
    { label: 'file bytes written', series: 'fs.write.bytes' },
    { label: 'file opens', series: 'fs.open.ops' },
    { label: 'failed opens', series: 'fs.open.errors' },
    { label: 'fsyncs', series: 'fs.fsync.ops' },
    { label: 'bytes read (proc-io)', series: 'proc.io.rchar' },
    { label: 'bytes written (proc-io)', series: 'proc.io.wchar' },
  ],
  tables: [
    {
      title: 'Files, by bytes',
      key: ['path'],
      columns: [
        { label: 'bytes', series: BYTES },
        { label: 'read', series: 'fs.read.bytes' },
        { label: 'written', series: 'fs.write.bytes' },
        { label: 'ops', series: ['fs.read.ops', 'fs.write.ops'] },
        { label: 'opens', series: 'fs.open.ops' },
        { label: 'failed opens', series: 'fs.open.errors' },
        { label: 'fsyncs', series: 'fs.fsync.ops' },
        { label: 'I/O time', series: ['fs.read.time', 'fs.write.time'] },
      ],
      rank: ['bytes', 'ops', 'opens', 'failed opens'],
    },
    {
      title: 'Processes (proc-io), by bytes',
      key: ['comm', 'pid'],
      columns: [
        { label: 'bytes', series: ['proc.io.rchar', 'proc.io.wchar'] },
        { label: 'read', series: 'proc.io.rchar' },
        { label: 'written', series: 'proc.io.wchar' },
        { label: 'read calls', series: 'proc.io.syscr' },
        { label: 'write calls', series: 'proc.io.syscw' },
        { label: 'storage written', series: 'proc.io.write_bytes' },
      ],
    },
  ],
  histograms: {
    'fs.read.latency': { boundUnit: 'ns', cumulative: false },
    'fs.write.latency': { boundUnit: 'ns', cumulative: false },
  },
};
