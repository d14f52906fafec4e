import { existsSync, readFileSync } from 'node:fs';
import type { CheckContext, CheckResult, Technique } from '@scalpels/core';
import type { Options } from './options.js';

const TRACEFS_DIRS = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'];
export const MOUNT_TRACEFS = 'mount -t tracefs nodev /sys/kernel/tracing';

/** Where the syscall tracepoints are, when tracefs is mounted. */
function syscallEvents(): string | undefined {
  return TRACEFS_DIRS.map((d) => `${d}/events/syscalls`).find((d) => existsSync(d));
}

function lockdown(): string | undefined {
  try {
    const m = /\[(\w+)\]/.exec(readFileSync('/sys/kernel/security/lockdown', 'utf8'));
    return m?.[1];
  } catch {
    return undefined;
  }
}

async function checkBpftrace(ctx: CheckContext<Options>): Promise<CheckResult> {
  const bin = await ctx.which('bpftrace');
  if (!bin)
    return {
      status: 'fixable',
      detail: 'bpftrace is not installed',
      hint: 'apt-get install -y bpftrace (Debian/Ubuntu) or dnf install bpftrace',
    };
  if (!ctx.isRoot)
    return { status: 'unavailable', detail: 'bpftrace needs root (CAP_BPF and CAP_PERFMON)' };
  if (lockdown() === 'confidentiality')
    return {
      status: 'unavailable',
      detail: 'kernel lockdown=confidentiality forbids reading kernel memory with BPF',
    };
  if (!existsSync('/sys/kernel/btf/vmlinux') && !existsSync('/proc/kallsyms'))
    return { status: 'unavailable', detail: 'kernel has neither BTF nor kallsyms' };
  if (!syscallEvents())
    return existsSync('/sys/kernel/tracing')
      ? {
          status: 'fixable',
          detail: 'tracefs is not mounted (no syscalls tracepoints under /sys/kernel/tracing)',
          hint: MOUNT_TRACEFS,
        }
      : { status: 'unavailable', detail: 'kernel has no tracefs (CONFIG_FTRACE_SYSCALLS off?)' };
  if (ctx.depth === 'quick')
    return { status: 'ok', detail: `bpftrace at ${bin}, syscall tracepoints present` };

  // Full check: attach the tracepoints the program uses and exit at once.
  const probe = ctx.exec(
    [
      bin,
      '-e',
      'tracepoint:syscalls:sys_enter_openat, tracepoint:syscalls:sys_exit_pwritev2, tracepoint:sched:sched_process_fork { @ = count(); } ' +
        'interval:ms:10 { exit(); } END { clear(@); }',
    ],
    20_000,
  );
  const r = await probe;
  if (r.exitCode !== 0) {
    const why = r.stderr
      .split('\n')
      .filter((l) => /ERROR|error/.test(l) && !/RLIMIT_MEMLOCK/.test(l))
      .slice(0, 2)
      .join(' ');
    return {
      status: 'unavailable',
      detail: `bpftrace cannot attach syscall tracepoints: ${why || `exit ${r.exitCode}`}`,
    };
  }
  const version = (await ctx.exec([bin, '--version'], 5000)).stdout.trim();
  return { status: 'ok', detail: `${version || 'bpftrace'}: syscall tracepoints attach` };
}

async function checkProcIo(_ctx: CheckContext<Options>): Promise<CheckResult> {
  if (!existsSync('/proc/self/io'))
    return {
      status: 'unavailable',
      detail: 'no /proc/PID/io (kernel without CONFIG_TASK_IO_ACCOUNTING)',
    };
  return { status: 'ok', detail: '/proc/PID/io sampling: per-process totals, no per-file detail' };
}

export const techniques: readonly Technique<Options>[] = [
  {
    name: 'bpftrace',
    description:
      'bpftrace program on syscall tracepoints: per process and per file ops, bytes, opens, fsyncs, latency; VFS counters',
    check: checkBpftrace,
  },
  {
    name: 'proc-io',
    description:
      '/proc/PID/io sampling: per-process read/write bytes and calls only (no per-file detail)',
    check: checkProcIo,
  },
];

/** Walks the chain: the first technique that works; says why the better ones do not. */
export async function check(ctx: CheckContext<Options>): Promise<CheckResult> {
  const notes: string[] = [];
  let fix: string | undefined;
  const forced = ctx.options.technique;
  const chain = forced !== 'auto' ? techniques.filter((t) => t.name === forced) : techniques;
  for (const t of chain) {
    const r = await t.check(ctx);
    if (r.status === 'ok') {
      if (notes.length === 0) return { ...r, technique: t.name };
      return {
        status: 'ok',
        technique: t.name,
        detail: `${t.name}: ${r.detail} (fallback: ${notes.join('; ')})`,
        hint: fix,
      };
    }
    notes.push(`${t.name} ${r.status === 'fixable' ? 'not ready' : 'unavailable'}: ${r.detail}`);
    fix ??= r.hint;
  }
  return fix
    ? { status: 'fixable', detail: notes.join('; '), hint: fix }
    : { status: 'unavailable', detail: notes.join('; ') };
}
