import type { Schema } from '@scalpels/core';

/**
 * Labels: `syscall` (name from the kernel's syscall table), and depending on `by`: `pid` and
 * `comm` (per process), `comm` (per process name, system-wide) or nothing (totals).
 */
export const schema: Schema = {
  series: {
    'syscalls.calls': {
      kind: 'counter',
      unit: 'count',
      description:
        'System calls made, counted when they return (exit and exit_group never return: counted on entry with exits=true)',
      labels: ['pid', 'comm', 'syscall'],
    },
    'syscalls.errors': {
      kind: 'counter',
      unit: 'count',
      description:
        'System calls that returned an error, by errno name (errno "unknown" when the technique only counts errors: strace, perf)',
      labels: ['pid', 'comm', 'syscall', 'errno'],
    },
    'syscalls.time': {
      kind: 'counter',
      unit: 'ms',
      description:
        'Total time spent inside system calls, entry to return (latency=true with bpftrace; always with strace and perf)',
      labels: ['pid', 'comm', 'syscall'],
    },
    'syscalls.latency': {
      kind: 'histogram',
      unit: 'count',
      description:
        'Calls per log2 latency bucket; label le is the bucket upper bound in nanoseconds, inclusive (latency=true, bpftrace only)',
      labels: ['pid', 'comm', 'syscall', 'le'],
    },
  },
};
