import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Target, WorkerContext, WorkerSpec } from '@scalpels/core';
import { readStat, scanProcesses } from '@scalpels/core/procfs';
import { bpftraceProgram, READY_PREFIX, type Grouping } from './program.js';
import type { Options } from './options.js';

export function grouping(options: Options, target: Target): Grouping {
  const by = options.by;
  if (by !== 'auto') return by;
  return target.kind === 'none' ? 'comm' : 'process';
}

/** Runs the tool under relay.js, which prints the summary file on stdout once the tool exits. */
function relay(ctx: WorkerContext, name: string, argv: (file: string) => string[]): string[] {
  const file = join(ctx.runtimeDir, name);
  // The compiled script of the installed package (src/relay.ts → dist/relay.js).
  const relayJs = join(ctx.pluginDir, 'dist', 'relay.js');
  return [process.execPath, relayJs, file, '--', ...argv(file)];
}

/** Most processes named at start, for system-wide per-process counts (beyond, names come from fork/exec). */
const MAX_EXISTING = 4096;

function existingProcesses(): { pid: number; comm: string }[] {
  return [...scanProcesses().values()]
    .slice(0, MAX_EXISTING)
    .map(({ pid, comm }) => ({ pid, comm }));
}

export function worker(options: Options, ctx: WorkerContext): WorkerSpec {
  const technique = ctx.technique ?? 'bpftrace';
  const pids = ctx.target.kind === 'none' ? [] : ctx.target.pids;
  if (ctx.target.kind !== 'none' && pids.length === 0)
    throw new Error('syscalls: the target has no process');
  switch (technique) {
    case 'strace': {
      if (pids.length === 0)
        throw new Error(
          'syscalls: strace cannot trace system-wide; give a target or use bpftrace or perf',
        );
      // -w: wall-clock time in each call; -f: follow children (and all threads of -p processes).
      return {
        argv: relay(ctx, 'strace.txt', (file) => [
          'strace',
          '-c',
          '-f',
          '-w',
          '-o',
          file,
          ...pids.flatMap((p) => ['-p', String(p)]),
        ]),
        stop: { signal: 'SIGINT', graceMs: 10_000 },
        // strace leaves by itself, summary written, when its last tracee is gone.
        mayExit: true,
        ready: { stderr: /Process \d+ attached/, timeoutMs: 30_000 },
      };
    }
    case 'perf': {
      // perf trace -p follows the threads of the given processes, not children forked later:
      // for `run` (whose root only launches the workload) it would count nothing useful.
      if (ctx.target.kind === 'run')
        throw new Error(
          'syscalls: perf trace cannot follow the children of `scalpels run`; install bpftrace or use --set syscalls.technique=strace',
        );
      const scope = pids.length ? ['-p', pids.join(',')] : ['-a'];
      // -v prints "mmap size" once the ring buffers are mapped, before the events are enabled:
      // the only sign perf trace gives. Calls in the first moments after it can be missed.
      return {
        argv: relay(ctx, 'perf-trace.txt', (file) => [
          'perf',
          'trace',
          '-s',
          '-v',
          '-o',
          file,
          ...scope,
        ]),
        stop: { signal: 'SIGINT', graceMs: 10_000 },
        // perf trace -p leaves by itself, summary written, when its processes are gone.
        mayExit: true,
        ready: { stderr: /^mmap size \d+B/, timeoutMs: 30_000 },
      };
    }
    default: {
      const program = bpftraceProgram({
        grouping: grouping(options, ctx.target),
        roots: pids
          .filter((pid) => pid !== ctx.target.launcher)
          .map((pid) => ({ pid, comm: readStat(pid)?.comm ?? '?' })),
        launcher: ctx.target.launcher,
        existing:
          pids.length === 0 && grouping(options, ctx.target) === 'process'
            ? existingProcesses()
            : undefined,
        latency: options.latency,
        exits: options.exits,
        intervalMs: options.interval,
        arch: process.arch,
      });
      const file = join(ctx.runtimeDir, 'syscalls.bt');
      writeFileSync(file, program);
      return {
        argv: ['bpftrace', '-f', 'json', file],
        env: {
          BPFTRACE_MAP_KEYS_MAX: String(options['max-keys']),
        },
        // SIGINT makes bpftrace detach, run END (the final snapshot) and exit.
        stop: { signal: 'SIGINT', graceMs: 10_000 },
        ready: { stdout: new RegExp(READY_PREFIX), timeoutMs: 60_000 },
      };
    }
  }
}
