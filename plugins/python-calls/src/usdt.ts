import { execFileSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import type { OptionValues, WorkerContext, WorkerSpec } from '@scalpels/core';
import { buildRules } from './presets.js';

/** The interpreter whose probes the USDT technique attaches to. */
export function usdtInterpreter(options: OptionValues): string {
  const python = typeof options.python === 'string' ? options.python : 'python3';
  try {
    const exe = execFileSync(python, ['-c', 'import sys; print(sys.executable)'], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    return realpathSync(exe.trim());
  } catch {
    return python;
  }
}

/** Why the USDT technique cannot do what the options ask, if it cannot. */
export function usdtLimitation(options: OptionValues): string | undefined {
  if (options.timing === true || options.exceptions === true)
    return 'timing and exceptions need the profiler technique';
  if ((options.module as readonly string[] | undefined)?.length)
    return 'module filters need the profiler technique';
  return undefined;
}

/** bpftrace string literal. */
function bt(s: string): string {
  return JSON.stringify(s);
}

/**
 * bpftrace program: counts function__entry per process, thread, file, function and first line in
 * the kernel, printed (JSON) and cleared every interval. Only the target's process tree counts.
 */
export function usdtProgram(
  python: string,
  rootPids: readonly number[],
  functions: readonly string[],
  intervalMs: number,
): string {
  const inTree = rootPids.length
    ? `$t = curtask; $hit = 0;
  unroll(24) { if (${rootPids.map((p) => `$t->tgid == ${p}`).join(' || ')}) { $hit = 1; } $t = $t->real_parent; }`
    : '$hit = 1;';
  const fnFilter = functions.length
    ? ` && (${functions.map((f) => `str(arg1) == ${bt(f)}`).join(' || ')})`
    : '';
  return `usdt:${python}:python:function__entry
{
  ${inTree}
  if ($hit${fnFilter}) { @calls[pid, tid, str(arg0), str(arg1), arg2] = count(); }
}
interval:ms:${Math.max(50, Math.round(intervalMs))} { print(@calls); clear(@calls); }
END { print(@calls); clear(@calls); }
`;
}

export function usdtWorker(options: OptionValues, ctx: WorkerContext): WorkerSpec {
  const limitation = usdtLimitation(options);
  if (limitation) throw new Error(`python-calls (usdt): ${limitation}`);
  const rules = buildRules({
    function: options.function as readonly string[] | undefined,
    preset: options.preset as readonly string[] | undefined,
  });
  const functions = rules.every((r) => r.functions?.length)
    ? rules.flatMap((r) => r.functions ?? [])
    : [];
  const prog = usdtProgram(
    usdtInterpreter(options),
    ctx.target.pids,
    functions,
    Number(options.interval ?? 1000),
  );
  return {
    argv: ['bpftrace', '-f', 'json', '-e', prog],
    stop: { signal: 'SIGINT', graceMs: 5000 },
    ready: { stdout: /"attached_probes"/, timeoutMs: 60_000 },
  };
}
