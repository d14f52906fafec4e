import { readFileSync } from 'node:fs';
import { definePlugin } from '@scalpels/core';
import type { ParseContext } from '@scalpels/core';
import { check, techniques } from './check.js';
import { createBpftraceParser, createProcIoParser } from './parser.js';
import { schema } from './schema.js';
import { worker } from './worker.js';
import { view } from './view.js';
import { OPTIONS, type Options } from './options.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export default definePlugin({
  name: 'fs-io',
  version: pkg.version,
  description:
    'Filesystem I/O per process and per file (reads, writes, opens, fsyncs, latency) aggregated in the kernel, ' +
    'plus node-wide VFS counters; falls back to /proc/PID/io sampling',
  apiVersion: '>=1.2.0 <2',
  target: 'optional',
  options: OPTIONS,
  requires: [
    {
      kind: 'binary',
      what: 'bpftrace',
      why: 'runs the in-kernel aggregation (technique bpftrace)',
    },
    {
      kind: 'root',
      what: 'root',
      why: 'loading BPF programs and reading other users’ /proc/PID/io',
    },
    {
      kind: 'kernel',
      what: 'tracefs with syscalls tracepoints',
      why: 'the program hooks syscall entry and exit',
    },
    { kind: 'file', what: '/proc/PID/io', why: 'fallback technique proc-io' },
  ],
  techniques,
  check,
  worker,
  parser: (ctx: ParseContext<Options>) =>
    ctx.technique === 'proc-io' ? createProcIoParser(ctx) : createBpftraceParser(ctx),
  schema,
  async setup(_options, ctx) {
    if (ctx.technique === 'proc-io') return;
    // A reference on the node's tracefs (lease shared with syscalls and systemtap): a tracer that
    // mounted it does not unmount it while this one still attaches there. check() made sure it
    // is mounted; nothing is changed here.
    await ctx.lease({ resource: 'tracefs', scope: 'node', change: async () => undefined });
  },
  report: view,
});
