import { createRequire } from 'node:module';
import { definePlugin } from '@scalpels/core';
import { checkChain, techniques } from './check.js';
import { createParser } from './parser.js';
import { schema } from './schema.js';
import {
  isMountPoint,
  mountedTracefs,
  kernelHasTracefs,
  mountTracefs,
  TRACEFS,
  unmountTracefs,
} from './tracefs.js';
import { verify } from './verify.js';
import { worker } from './worker.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };

/** Undo kind: tracefs mounted by setup(); data says where. */
const MOUNT_TRACEFS = 'mount-tracefs';

export default definePlugin({
  name: 'syscalls',
  version: pkg.version,
  description:
    'System calls per process and per call: counts, errors by errno, latency; aggregated in the kernel',
  apiVersion: '>=1.0.0 <2',
  target: 'optional',
  options: {
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
    mapKeys: {
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
  },
  requires: [
    {
      kind: 'binary',
      what: 'bpftrace (or perf, or strace as fallbacks)',
      why: 'counts the system calls',
    },
    { kind: 'root', what: 'root', why: 'attaching eBPF programs and perf events to tracepoints' },
    {
      kind: 'kernel',
      what: 'tracefs with raw_syscalls tracepoints (CONFIG_FTRACE_SYSCALLS)',
      why: 'bpftrace and perf attach there',
    },
  ],
  techniques,
  check: checkChain,
  verify,
  worker,
  parser: createParser,
  schema,
  async setup(_options, ctx) {
    if (
      ctx.technique === 'strace' ||
      mountedTracefs() ||
      !kernelHasTracefs() ||
      isMountPoint(TRACEFS)
    )
      return;
    await ctx.journal({
      kind: MOUNT_TRACEFS,
      data: { path: TRACEFS },
      description: `mount tracefs on ${TRACEFS} (not mounted before; unmounted at stop)`,
    });
    await mountTracefs(TRACEFS);
  },
  async undo(action) {
    if (action.kind !== MOUNT_TRACEFS) return;
    const path = (action.data as { path?: unknown } | null)?.path;
    if (typeof path === 'string') await unmountTracefs(path);
  },
});
