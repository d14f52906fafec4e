import { realpathSync } from 'node:fs';
import { basename } from 'node:path';
import {
  WORKER_READY_LINE,
  type Target,
  type WorkerContext,
  type WorkerSpec,
} from '@scalpels/core';
import { defaultPython } from './checks.js';
import { buildRules } from './presets.js';
import type { Options } from './options.js';

/**
 * The interpreter whose probes the USDT technique attaches to: the target's own (/proc/PID/exe of
 * a target process running Python: what it already runs, only read by bpftrace, never executed),
 * else the node's configured or the system interpreter. Never an option.
 */
export function usdtInterpreter(target: Target): string {
  for (const pid of target.pids) {
    if (pid === target.launcher) continue;
    try {
      const exe = realpathSync(`/proc/${pid}/exe`);
      // By name: other programs carry a function__entry marker too (node does).
      if (/^python\d*(\.\d+)?[dmu]*$/.test(basename(exe))) return exe;
    } catch {
      // gone, or not ours to read: fall back
    }
  }
  try {
    return realpathSync(defaultPython());
  } catch {
    return defaultPython();
  }
}

/** Why the USDT technique cannot do what the options ask, if it cannot. */
export function usdtLimitation(options: Options): string | undefined {
  if (options.timing || options.exceptions)
    return 'timing and exceptions need the profiler technique';
  if (options.module?.length) return 'module filters need the profiler technique';
  return undefined;
}

/** Longest string (source path) the USDT program reads, terminating zero included. */
export const USDT_STRLEN = 100;

/** Printed by the program once its probes are in place: the worker's ready line. */
export const USDT_READY = WORKER_READY_LINE;

/** bpftrace string literal. */
function bt(s: string): string {
  return JSON.stringify(s);
}

/**
 * bpftrace program: counts function__entry per process, thread, file, function and first line in
 * the kernel, printed (JSON) every interval. The map is cumulative and the parser takes increases:
 * a print followed by a clear lost or repeated the calls made in between (seen: 2989 and 4153 of
 * 3000). END clears it so bpftrace's dump at exit adds nothing. Only the target's process tree
 * counts.
 */
export function usdtProgram(
  python: string,
  rootPids: readonly number[],
  functions: readonly string[],
  intervalMs: number,
  threads = false,
): string {
  const inTree = rootPids.length
    ? `$t = curtask; $hit = 0;
  unroll(24) { if (${rootPids.map((p) => `$t->tgid == ${p}`).join(' || ')}) { $hit = 1; } $t = $t->real_parent; }`
    : '$hit = 1;';
  const fnFilter = functions.length
    ? ` && (${functions.map((f) => `str(arg1) == ${bt(f)}`).join(' || ')})`
    : '';
  // BEGIN's output reaches stdout only once bpftrace polls its buffers, after every probe is
  // attached; "attached_probes" is printed before attaching, too early for the launcher.
  return `BEGIN { printf("${USDT_READY}\\n"); }
usdt:${python}:python:function__entry
{
  ${inTree}
  if ($hit${fnFilter}) { @calls[pid, ${threads ? 'tid, ' : ''}str(arg0), str(arg1), arg2] = count(); }
}
interval:ms:${Math.max(50, Math.round(intervalMs))} { print(@calls); }
END { print(@calls); clear(@calls); }
`;
}

export function usdtWorker(options: Options, ctx: WorkerContext): WorkerSpec {
  const limitation = usdtLimitation(options);
  if (limitation) throw new Error(`python-calls (usdt): ${limitation}`);
  const rules = buildRules({ function: options.function, preset: options.preset });
  const functions = rules.every((r) => r.functions?.length)
    ? rules.flatMap((r) => r.functions ?? [])
    : [];
  const prog = usdtProgram(
    usdtInterpreter(ctx.target),
    ctx.target.pids,
    functions,
    options.interval,
    options.thread,
  );
  return {
    argv: ['bpftrace', '-f', 'json', '-e', prog],
    // Source paths longer than bpftrace's default 64-byte strings were cut, and their module
    // names with them (a checkout under a long folder name). 100: two strings of more than that
    // in the map key exceed the 512-byte BPF stack with bpftrace 0.17.
    env: { BPFTRACE_STRLEN: String(USDT_STRLEN) },
    stop: { signal: 'SIGINT', graceMs: 5000 },
    ready: { stdout: new RegExp(`"data": "${USDT_READY}`), timeoutMs: 60_000 },
  };
}
