import type { OptionSpecs, OptionValuesOf } from '@scalpels/core';

/** The options of fs-io (`--set fs-io.KEY=VALUE`). */
export const OPTIONS = {
  technique: {
    type: 'string',
    default: 'auto',
    choices: ['auto', 'bpftrace', 'proc-io'],
    description: 'auto: the first technique that works here (bpftrace, then proc-io); or force one',
  },
  interval: {
    type: 'duration',
    default: '1s',
    min: '100ms',
    max: '1h',
    description: 'how often the kernel totals are read and turned into samples',
    unit: 'ms',
  },
  latency: {
    type: 'boolean',
    default: false,
    description: 'also time every read and write: total time and a log2 latency histogram per file',
  },
  vfs: {
    type: 'boolean',
    default: true,
    description:
      'also count read/write/open/create/unlink/fsync calls of the whole node (like vfsstat)',
  },
  registers: {
    type: 'boolean',
    default: true,
    description:
      'on x86-64 with BTF, take the fd of reads and writes from the registers saved at syscall entry ' +
      '(no entry probe); false: save it in an entry probe',
  },
  'max-keys': {
    aliases: ['maxKeys'],
    type: 'integer',
    default: 16384,
    min: 1024,
    max: 1_048_576,
    description:
      'entries per kernel map (files x processes, open descriptors); beyond it new entries are not counted',
  },
  'path-max': {
    aliases: ['pathMax'],
    type: 'integer',
    default: 200,
    min: 32,
    max: 200,
    description:
      'longest path kept, in bytes; longer paths are cut (bpftrace 0.17 allows at most 200)',
    unit: 'bytes',
  },
} as const satisfies OptionSpecs;

/** What the plugin's functions receive: options validated by the core, defaults applied. */
export type Options = OptionValuesOf<typeof OPTIONS>;
