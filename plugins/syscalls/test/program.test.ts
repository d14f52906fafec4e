import { describe, expect, it } from 'vitest';
import { bpftraceProgram } from '../src/program.js';

const base = {
  grouping: 'process' as const,
  roots: [],
  latency: false,
  exits: false,
  intervalMs: 1000,
};

describe('generated bpftrace program', () => {
  it('skips the child side of clone/fork with the numbers of the traced architecture', () => {
    const x86 = bpftraceProgram({ ...base, arch: 'x64' });
    expect(x86).toContain('args->id != 56 && args->id != 57 && args->id != 58 && args->id != 435');
    // arm64 has no fork or vfork system call.
    const arm = bpftraceProgram({ ...base, arch: 'arm64' });
    expect(arm).toContain('(args->ret != 0 || (args->id != 220 && args->id != 435))');
  });

  it('escapes process names it embeds', () => {
    const p = bpftraceProgram({ ...base, arch: 'x64', roots: [{ pid: 42, comm: 'a"b\\c\nd' }] });
    expect(p).toContain('@comm[42] = "a\\"b\\\\c?d";');
    expect(p).toContain('@traced[42] = 1;');
  });

  it('follows the launcher children without tracing the launcher', () => {
    const p = bpftraceProgram({ ...base, arch: 'x64', launcher: 7 });
    expect(p).toContain('tracepoint:sched:sched_process_fork /@traced[pid] || pid == 7/');
    expect(p).not.toContain('@traced[7] = 1');
    expect(p).toContain('tracepoint:raw_syscalls:sys_exit /@traced[pid] && ');
  });

  it('adds entry probes only for latency and exits', () => {
    const plain = bpftraceProgram({ ...base, arch: 'x64' });
    expect(plain).not.toContain('sys_enter');
    const both = bpftraceProgram({ ...base, arch: 'x64', latency: true, exits: true });
    expect(both).toContain('tracepoint:raw_syscalls:sys_enter');
    expect(both).toContain('tracepoint:syscalls:sys_enter_exit_group');
  });

  it('ticks every second only when the interval is longer', () => {
    expect(bpftraceProgram({ ...base, arch: 'x64' })).not.toContain('interval:s:1');
    expect(bpftraceProgram({ ...base, arch: 'x64', intervalMs: 60_000 })).toContain('interval:s:1');
  });
});
