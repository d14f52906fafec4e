import type { ReportView } from '@scalpels/core';

const CPU = ['proc.cpu.user', 'proc.cpu.system'] as const;

/** What the report shows of proc: the target's CPU, memory and I/O, then the node's. */
export const view: ReportView = {
  title: 'Processes and node',
  headline: [
    { label: 'CPU time', series: CPU },
    { label: 'peak RSS', series: 'proc.rss', of: 'peak' },
    { label: 'read (rchar)', series: 'proc.io.rchar' },
    { label: 'written (wchar)', series: 'proc.io.wchar' },
  ],
  tables: [
    {
      title: 'Traced process trees, by CPU time',
      key: ['comm', 'pid'],
      columns: [
        { label: 'CPU', series: CPU },
        { label: 'user', series: 'proc.cpu.user' },
        { label: 'system', series: 'proc.cpu.system' },
        { label: 'peak RSS', series: 'proc.rss', of: 'peak' },
        { label: 'read', series: 'proc.io.rchar' },
        { label: 'written', series: 'proc.io.wchar' },
        { label: 'ctx switches', series: ['proc.ctxsw.voluntary', 'proc.ctxsw.involuntary'] },
      ],
    },
    {
      title: 'Node CPU by mode',
      limit: 3,
      key: ['mode'],
      columns: [
        { label: 'CPU time', series: 'kernel.cpu.time' },
        { label: 'share', share: 'CPU time' },
      ],
    },
    {
      title: 'Disks, by busy time',
      limit: 2,
      key: ['device'],
      columns: [
        { label: 'busy', series: 'disk.io.time' },
        { label: 'read', series: 'disk.read.bytes' },
        { label: 'written', series: 'disk.write.bytes' },
        { label: 'ops', series: ['disk.read.ops', 'disk.write.ops'] },
      ],
      rank: ['busy', 'ops'],
    },
    {
      title: 'Network interfaces, by bytes',
      limit: 2,
      key: ['interface'],
      columns: [
        { label: 'bytes', series: ['network.rx.bytes', 'network.tx.bytes'] },
        { label: 'received', series: 'network.rx.bytes' },
        { label: 'sent', series: 'network.tx.bytes' },
        {
          label: 'errors+drops',
          series: [
            'network.rx.errors',
            'network.tx.errors',
            'network.rx.drops',
            'network.tx.drops',
          ],
        },
      ],
    },
  ],
};
