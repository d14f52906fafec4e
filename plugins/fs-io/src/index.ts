import { readFileSync } from 'node:fs';
import { definePlugin } from '@scalpels/core';
import type { ParseContext } from '@scalpels/core';
import { check, techniques } from './check.js';
import { createBpftraceParser, createProcIoParser } from './parser.js';
import { schema } from './schema.js';
import { worker } from './worker.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export default definePlugin({
  name: 'fs-io',
  version: pkg.version,
  description:
    'Filesystem I/O per process and per file (reads, writes, opens, fsyncs, latency) aggregated in the kernel, ' +
    'plus node-wide VFS counters; falls back to /proc/PID/io sampling',
  apiVersion: '>=1.0.0 <2',
  target: 'optional',
  options: {
    technique: {
      type: 'string',
      default: 'auto',
      choices: ['auto', 'bpftrace', 'proc-io'],
      description:
        'auto: the first technique that works here (bpftrace, then proc-io); or force one',
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
      description:
        'also time every read and write: total time and a log2 latency histogram per file',
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
    maxKeys: {
      type: 'integer',
      default: 16384,
      min: 1024,
      max: 1_048_576,
      description:
        'entries per kernel map (files x processes, open descriptors); beyond it new entries are not counted',
    },
    pathMax: {
      type: 'integer',
      default: 200,
      min: 32,
      max: 200,
      description:
        'longest path kept, in bytes; longer paths are cut (bpftrace 0.17 allows at most 200)',
      unit: 'bytes',
    },
  },
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
  parser: (ctx: ParseContext) =>
    ctx.technique === 'proc-io' ? createProcIoParser(ctx) : createBpftraceParser(ctx),
  schema,
});
