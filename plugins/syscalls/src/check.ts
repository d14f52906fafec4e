import { readFileSync } from 'node:fs';
import type { CheckContext, CheckResult, Technique } from '@scalpels/core';
import { kernelHasTracefs, lockdownMode, mountedTracefs, TRACEFS } from './tracefs.js';
import type { Options } from './options.js';

export type TechniqueName = 'bpftrace' | 'perf' | 'strace';

const ok = (technique: TechniqueName, detail: string): CheckResult => ({
  status: 'ok',
  technique,
  detail,
});

/** What the kernel-side techniques (bpftrace, perf) need besides their binary. */
function kernelTracing(ctx: CheckContext<Options>, tool: string): CheckResult | string {
  if (!ctx.isRoot)
    return {
      status: 'fixable',
      detail: `${tool} needs root (CAP_BPF and CAP_PERFMON) to attach to the syscall tracepoints`,
      hint: 'run scalpels as root (sudo)',
    };
  if (lockdownMode() === 'confidentiality')
    return {
      status: 'unavailable',
      detail: `kernel lockdown=confidentiality forbids tracefs and perf events, so ${tool} cannot trace system calls`,
    };
  const mounted = mountedTracefs();
  if (mounted) return `syscall tracepoints in ${mounted}`;
  if (!kernelHasTracefs())
    return {
      status: 'unavailable',
      detail: 'kernel without tracefs (CONFIG_FTRACE): no syscall tracepoints',
    };
  return `tracefs not mounted: it will be mounted on ${TRACEFS} for the run and unmounted after`;
}

export async function checkBpftrace(ctx: CheckContext<Options>): Promise<CheckResult> {
  const bin = await ctx.which('bpftrace');
  if (!bin)
    return {
      status: 'fixable',
      detail: 'bpftrace is not installed',
      hint: 'apt-get install -y bpftrace',
    };
  const kernel = kernelTracing(ctx, 'bpftrace');
  if (typeof kernel !== 'string') return kernel;
  if (ctx.depth === 'quick') return ok('bpftrace', `bpftrace: in-kernel aggregation (${kernel})`);
  const version = await ctx.exec([bin, '--version'], 10_000);
  if (version.exitCode !== 0)
    return {
      status: 'unavailable',
      detail: `bpftrace --version failed: ${lastLine(version.stderr)}`,
    };
  const v = version.stdout.trim();
  if (mountedTracefs()) {
    // Compiles and attaches the tracepoint this plugin relies on, then exits at once.
    const probe = await ctx.exec(
      [bin, '-e', 'tracepoint:raw_syscalls:sys_exit /0/ { } BEGIN { exit(); }'],
      30_000,
    );
    if (probe.exitCode !== 0)
      return {
        status: 'unavailable',
        detail: `${v} cannot attach to raw_syscalls:sys_exit: ${lastLine(probe.stderr)}`,
      };
  }
  return ok('bpftrace', `${v}: in-kernel aggregation (${kernel})`);
}

export async function checkPerf(ctx: CheckContext<Options>): Promise<CheckResult> {
  const bin = await ctx.which('perf');
  if (!bin)
    return {
      status: 'fixable',
      detail: 'perf is not installed',
      hint: 'apt-get install -y linux-perf',
    };
  const kernel = kernelTracing(ctx, 'perf trace');
  if (typeof kernel !== 'string') return kernel;
  if (ctx.depth === 'quick') return ok('perf', `perf trace -s: one event per call (${kernel})`);
  const probe = await ctx.exec([bin, 'trace', '-s', '-o', '/dev/null', '--', 'true'], 30_000);
  if (probe.exitCode !== 0)
    return {
      status: 'unavailable',
      detail: `perf trace does not work here: ${lastLine(probe.stderr)}`,
    };
  return ok('perf', `perf trace -s: one event per call (${kernel})`);
}

export async function checkStrace(ctx: CheckContext<Options>): Promise<CheckResult> {
  const bin = await ctx.which('strace');
  if (!bin)
    return {
      status: 'fixable',
      detail: 'strace is not installed',
      hint: 'apt-get install -y strace',
    };
  let scope = 0;
  try {
    scope = Number(readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8').trim());
  } catch {
    // No Yama: ptrace follows the classic rules.
  }
  if (scope === 3)
    return { status: 'unavailable', detail: 'ptrace is disabled (kernel.yama.ptrace_scope=3)' };
  if (!ctx.isRoot && scope >= 1)
    return {
      status: 'fixable',
      detail: `strace cannot attach to running processes (kernel.yama.ptrace_scope=${scope})`,
      hint: 'run scalpels as root (sudo)',
    };
  if (ctx.depth === 'full') {
    const probe = await ctx.exec([bin, '-c', '-o', '/dev/null', '--', 'true'], 30_000);
    if (probe.exitCode !== 0)
      return {
        status: 'unavailable',
        detail: `strace does not work here: ${lastLine(probe.stderr)}`,
      };
  }
  return ok(
    'strace',
    'strace -c -f: stops the target at every call (slow), targets only, totals without errno',
  );
}

export const techniques: readonly Technique<Options>[] = [
  {
    name: 'bpftrace',
    description:
      'bpftrace program counting on the raw_syscalls tracepoints, aggregated in the kernel (exact, cheapest)',
    check: checkBpftrace,
  },
  {
    name: 'perf',
    description:
      'perf trace -s: one perf event per call, summarised at stop (per thread, errors without errno)',
    check: checkPerf,
  },
  {
    name: 'strace',
    description:
      'strace -c -f: ptrace stops at every call, summarised at stop (totals only, targets only)',
    check: checkStrace,
  },
];

/**
 * Walks the chain (or checks the one technique the `technique` option forces) and returns the
 * first that works, saying why the better ones were passed over.
 */
export async function checkChain(ctx: CheckContext<Options>): Promise<CheckResult> {
  const forced = ctx.options.technique;
  if (forced !== 'auto') {
    const t = techniques.find((x) => x.name === forced);
    if (!t) return { status: 'unavailable', detail: `unknown technique ${forced}` };
    const r = await t.check(ctx);
    return { ...r, technique: t.name, detail: `${t.name} (forced): ${r.detail}` };
  }
  const passed: string[] = [];
  let firstHint: string | undefined;
  for (const t of techniques) {
    const r = await t.check(ctx);
    if (r.status === 'ok') {
      const why = passed.length ? `; not ${passed.join('; not ')}` : '';
      return {
        ...r,
        technique: t.name,
        detail: `${r.detail}${why}`,
        ...(firstHint ? { hint: firstHint } : {}),
      };
    }
    passed.push(`${t.name}: ${r.detail}`);
    firstHint ??= r.hint;
  }
  return {
    status: firstHint ? 'fixable' : 'unavailable',
    detail: passed.join('; '),
    ...(firstHint ? { hint: firstHint } : {}),
  };
}

function lastLine(text: string): string {
  return (
    text
      .trim()
      .split('\n')
      .filter((l) => !/RLIMIT_MEMLOCK/.test(l))
      .at(-1) ?? 'no error message'
  );
}
