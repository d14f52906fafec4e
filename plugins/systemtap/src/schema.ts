import type { Schema } from '@scalpels/core';

/**
 * Series of the bundled scripts have their own names; a user's script declares its series in
 * `# scalpels:` headers and they land in the generic `systemtap.counter` / `systemtap.gauge`
 * series, told apart by the `series` label (the declared name) and carrying the declared unit
 * in the `unit` label: a plugin's schema is fixed when it is loaded, before any script runs.
 */
export const schema: Schema = {
  series: {
    'systemtap.syscalls': {
      kind: 'counter',
      unit: 'count',
      description:
        'System calls made by the target (or the whole system) per interval, by family: open (open, openat, openat2, creat), close, read (read, readv, pread64, preadv), write (write, writev, pwrite64, pwritev). Bundled script `syscalls`.',
      labels: ['syscall'],
    },
    'systemtap.python_calls': {
      kind: 'counter',
      unit: 'count',
      description:
        'Python function entries per interval that match the `functions` filter (CPython function__entry marker), keyed `module:function`. Bundled script `python-calls`.',
      labels: ['function'],
    },
    'systemtap.counter': {
      kind: 'counter',
      unit: 'count',
      description:
        'Counter series declared by a script (`# scalpels: series NAME kind=counter unit=U`): each point is the increase since the previous one (or the delta of a `cumulative` total). `series` is the declared name, `unit` the declared unit (default count), `key` the row key of key/value and column lines.',
      labels: ['series', 'unit', 'key'],
    },
    'systemtap.gauge': {
      kind: 'gauge',
      unit: 'count',
      description:
        'Gauge series declared by a script (`# scalpels: series NAME kind=gauge unit=U`): each point is a level. Labels as for systemtap.counter.',
      labels: ['series', 'unit', 'key'],
    },
    'systemtap.histogram': {
      kind: 'histogram',
      unit: 'count',
      description:
        'Buckets of a histogram printed by a script with @hist_log/@hist_linear: one count per bucket, label `le` = the bucket upper bound (in the unit of the histogrammed value, label `unit`), `series` = name declared with `# scalpels: series NAME kind=histogram` (default `histogram`).',
      labels: ['series', 'unit', 'le'],
    },
  },
  events: {
    'systemtap.event': {
      description:
        'A tab-separated (or JSON) event line of a script, declared with `# scalpels: event NAME fields=a,b,c key=FIELD [duration=FIELD:UNIT] [value=FIELD]`. `data.event` is the declared name, the other fields go to `data`.',
      key: 'the declared key field (default: the event name)',
      valueUnit: 'as declared by the script',
      fields: { event: 'declared event name' },
    },
  },
};
