import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckContext, VerifyStage } from '@scalpels/core';
import { checkChain } from './check.js';
import { bpftraceProgram } from './program.js';
import { grouping } from './worker.js';
import type { Options } from './options.js';

/**
 * `scalpels plugins validate syscalls key=value ...`: which technique would run, and for bpftrace
 * whether the program these options generate compiles here (bpftrace --emit-elf: parsed, checked
 * and compiled to BPF, nothing loaded into the kernel).
 */
export async function verify(options: Options, ctx: CheckContext<Options>): Promise<VerifyStage[]> {
  const stages: VerifyStage[] = [];
  const check = await checkChain(ctx);
  stages.push({
    stage: 'technique',
    status: check.status === 'ok' ? 'passed' : 'failed',
    detail: check.status === 'ok' ? `${check.technique}: ${check.detail}` : check.detail,
  });
  if (check.status !== 'ok' || check.technique !== 'bpftrace') {
    stages.push({
      stage: 'program',
      status: 'skipped',
      detail: 'only the bpftrace technique runs a program',
    });
    return stages;
  }
  const bin = (await ctx.which('bpftrace')) ?? 'bpftrace';
  const dir = mkdtempSync(join(tmpdir(), 'scalpels-syscalls-verify-'));
  try {
    const variants = [
      {
        what: 'with a target',
        roots: [{ pid: process.pid, comm: 'node' }],
        target: 'pid' as const,
      },
      { what: 'system-wide', roots: [], target: 'none' as const },
    ];
    for (const v of variants) {
      const program = bpftraceProgram({
        grouping: grouping(options, { kind: v.target, pids: [], description: v.what }),
        roots: v.roots,
        latency: options.latency,
        exits: options.exits,
        intervalMs: options.interval,
        arch: process.arch,
      });
      const file = join(dir, `${v.target}.bt`);
      writeFileSync(file, program);
      const r = await ctx.exec([bin, '--emit-elf', join(dir, `${v.target}.elf`), file], 60_000);
      const err = r.stderr
        .split('\n')
        .filter((l) => l.trim() && !/RLIMIT_MEMLOCK/.test(l))
        .slice(0, 3)
        .join(' | ');
      stages.push({
        stage: `program (${v.what})`,
        status: r.exitCode === 0 ? 'passed' : 'failed',
        detail:
          r.exitCode === 0
            ? `${program.split('\n').length} lines compile`
            : err || `exit code ${r.exitCode}`,
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return stages;
}
