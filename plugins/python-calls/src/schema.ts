import type { Schema } from '@scalpels/core';

/** Upper bounds of the call-duration histogram buckets, in milliseconds (`le` labels). */
export const DURATION_BOUNDS_MS = [
  '0.001',
  '0.01',
  '0.1',
  '1',
  '10',
  '100',
  '1000',
  '10000',
  '+Inf',
] as const;

const callLabels = ['function', 'file', 'line', 'pid', 'thread'] as const;

export const schema: Schema = {
  series: {
    'python.calls': {
      kind: 'counter',
      unit: 'count',
      description:
        'Calls of the function (module:qualname) made in the interval, per process and thread; a generator or coroutine counts once, when it first runs.',
      labels: callLabels,
    },
    'python.call.time': {
      kind: 'counter',
      unit: 'ms',
      description:
        'Inclusive wall time of the calls that returned in the interval (with timing=true); total / python.calls = mean.',
      labels: callLabels,
    },
    'python.call.duration': {
      kind: 'histogram',
      unit: 'count',
      description:
        'Calls that returned in the interval with an inclusive duration <= le milliseconds (cumulative buckets, with timing=true).',
      labels: ['function', 'pid', 'le'],
    },
    'python.exceptions': {
      kind: 'counter',
      unit: 'count',
      description:
        'Calls of the function that ended by raising an exception (with exceptions=true).',
      labels: callLabels,
    },
  },
  events: {
    attach: {
      description: 'The profiler started in a process.',
      key: 'attach:<how>: direct (running process waiting in a system call), pending-call (running process, at its next safe point), start (new interpreter), fork',
      fields: {
        pid: 'process id',
        python: 'interpreter version',
        hook: 'instrument (the matching functions instrumented), setprofile or monitoring (global hook)',
        techniques: 'which technique each rule uses and why',
        executable: 'interpreter path',
        attachMs:
          'milliseconds from the exec (start) or from attaching (direct, pending-call) until the profiler ran',
      },
    },
    technique: {
      description:
        'How a process counts: instrument (only the functions the rules name are instrumented) or hook (a global hook sees every call: a bare file glob or no rule).',
      key: 'technique:<instrument|hook>',
      fields: { pid: 'process id', techniques: 'per rule, the technique and why' },
    },
    detach: {
      description: 'The profiler left a process (stop, process exit, connection lost).',
      key: 'detach:<reason>: stop, exit, lost',
      fields: { pid: 'process id' },
    },
    'attach-failed': {
      description: 'A process of the target could not be traced; it was left untouched.',
      key: 'attach-failed:<reason>',
      fields: { pid: 'process id' },
    },
  },
};
