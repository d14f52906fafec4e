import type { OptionSpecs, OptionValuesOf } from '@scalpels/core';

/** The options of syscalls (`--set syscalls.KEY=VALUE`). */
export const OPTIONS = {
  interval: {
    type: 'duration',
    default: '1s',
    min: '100ms',
    max: '1h',
    description: 'How often the kernel counters are read and recorded (bpftrace)',
  },
  latency: {
    type: 'boolean',
    default: false,
    description:
      'Also measure time per call: a log2 histogram and the total (bpftrace; costs a second probe per call)',
  },
  exits: {
    type: 'boolean',
    default: false,
    description:
      'Also count exit and exit_group, which never return, on entry (bpftrace; about 10% more cost per call)',
  },
  by: {
    type: 'string',
    default: 'auto',
    choices: ['auto', 'process', 'comm', 'total'],
    description:
      'Breakdown: per process (pid and comm), per process name, or totals; auto = process with a target, comm system-wide',
  },
  top: {
    type: 'integer',
    default: 20,
    min: 1,
    max: 10_000,
    description:
      'Per-name breakdown (by=comm): names kept per interval; the others are summed as "(other)"',
  },
  'max-keys': {
    aliases: ['mapKeys'],
    type: 'integer',
    default: 16_384,
    min: 1024,
    max: 1_048_576,
    description:
      'Capacity of each kernel map (keys: pid x syscall, or name x syscall); per-CPU maps preallocate keys x CPUs x 8 bytes',
  },
  technique: {
    type: 'string',
    default: 'auto',
    choices: ['auto', 'bpftrace', 'perf', 'strace'],
    description:
      'Force a technique instead of the first that works here (bpftrace, then perf trace, then strace)',
  },
} as const satisfies OptionSpecs;

/** What the plugin's functions receive: options validated by the core, defaults applied. */
export type Options = OptionValuesOf<typeof OPTIONS>;
