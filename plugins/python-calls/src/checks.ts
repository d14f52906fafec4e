import { openSync, readSync, closeSync, statSync, realpathSync, readFileSync } from 'node:fs';
import { configuredProgram, type CheckContext, type CheckResult } from '@scalpels/core';
import type { Options } from './options.js';

/**
 * The interpreter the USDT technique self-tests (and attaches to when the target runs none yet):
 * the one the node configuration names (`plugins.python-calls.python` in
 * /etc/scalpels/config.json, checked with trustedFile), else the system's. Never an option: the
 * self-test runs it as root.
 */
export function defaultPython(): string {
  return configuredProgram('python-calls', 'python') ?? '/usr/bin/python3';
}

/** Whether an ELF file carries CPython's USDT markers (a `python` provider `function__entry` note). */
export function hasUsdtMarkers(file: string): boolean {
  try {
    // The stapsdt notes are small strings; scanning the file for the probe name is enough to tell.
    const size = statSync(file).size;
    const fd = openSync(file, 'r');
    try {
      const chunk = Buffer.alloc(1 << 20);
      const needle = Buffer.from('function__entry\0');
      for (let pos = 0; pos < size; pos += chunk.length - needle.length) {
        const n = readSync(fd, chunk, 0, chunk.length, pos);
        if (chunk.subarray(0, n).includes(needle)) return true;
        if (n < chunk.length) break;
      }
      return false;
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** The interpreter `python3` runs here, following pyenv-style shims (full checks only: runs it). */
export async function resolvePython(
  ctx: CheckContext<Options>,
  python: string,
): Promise<string | undefined> {
  if (python.startsWith('/') && !isScript(python)) return realpath(python);
  const r = await ctx.exec([python, '-c', 'import sys; print(sys.executable)'], 10_000);
  return r.exitCode === 0 ? realpath(r.stdout.trim()) : undefined;
}

function isScript(file: string): boolean {
  try {
    return readFileSync(file).subarray(0, 2).toString() === '#!';
  } catch {
    return false;
  }
}

function realpath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

const SELFTEST_CALLS = 200;

/**
 * Whether USDT function probes fire in `python` without any hook in the process. On CPython 3.11
 * (even built with dtrace) they fire only while a profile or trace hook is active, so only a run
 * tells.
 */
export async function usdtSelfTest(
  ctx: CheckContext<Options>,
  python: string,
): Promise<{ seen: number; error?: string }> {
  const prog = `BEGIN { @n = 0; } usdt:${python}:python:function__entry /str(arg1) == "scalpels_selftest"/ { @n = @n + 1; } END { printf("seen %d\\n", @n); clear(@n); }`;
  const code = `def scalpels_selftest(): pass\nfor _ in range(${SELFTEST_CALLS}): scalpels_selftest()\n`;
  const r = await ctx.exec(
    ['bpftrace', '-e', prog, '-c', `${python} -c '${code.replace(/'/g, '')}'`],
    60_000,
  );
  const m = /seen (\d+)/.exec(r.stdout);
  if (!m) {
    const error = r.stderr.split('\n').find((l) => /ERROR/.test(l) && !/RLIMIT_MEMLOCK/.test(l));
    return { seen: 0, error: error?.trim() ?? `bpftrace exit code ${r.exitCode}` };
  }
  return { seen: Number(m[1]) };
}

export { SELFTEST_CALLS };

export async function checkUsdt(ctx: CheckContext<Options>): Promise<CheckResult> {
  const technique = 'usdt';
  const bpftrace = await ctx.which('bpftrace');
  if (!bpftrace)
    return {
      status: 'fixable',
      technique,
      detail: 'bpftrace is not installed',
      hint: 'apt-get install bpftrace',
    };
  if (!ctx.isRoot)
    return { status: 'fixable', technique, detail: 'USDT probes need root', hint: 'run as root' };
  const option = defaultPython();
  if (ctx.depth === 'quick') {
    const guess = option;
    return {
      status: 'unavailable',
      technique,
      detail: hasUsdtMarkers(realpath(guess))
        ? `${realpath(guess)} has USDT markers; whether they fire needs a self-test (scalpels doctor)`
        : `${realpath(guess)} has no USDT markers (CPython built without --with-dtrace)`,
    };
  }
  const python = await resolvePython(ctx, option);
  if (!python) return { status: 'unavailable', technique, detail: `cannot run ${option}` };
  const own = await usdtVerdict(ctx, python);
  if (own.ok) return { status: 'ok', technique, detail: own.detail };
  // Also say what the system interpreter does, when it is another one: it is the one that has
  // markers on Debian, and the reason they are not used is worth knowing.
  const system = realpath('/usr/bin/python3');
  const extra =
    system !== python && hasUsdtMarkers(system)
      ? `; ${(await usdtVerdict(ctx, system)).detail}`
      : '';
  return { status: 'unavailable', technique, detail: `${option} → ${own.detail}${extra}` };
}

async function usdtVerdict(
  ctx: CheckContext<Options>,
  python: string,
): Promise<{ ok: boolean; detail: string }> {
  if (!hasUsdtMarkers(python))
    return { ok: false, detail: `${python} has no USDT markers (built without --with-dtrace)` };
  const t = await usdtSelfTest(ctx, python);
  if (t.error) return { ok: false, detail: `USDT self-test failed on ${python}: ${t.error}` };
  if (t.seen !== SELFTEST_CALLS)
    return {
      ok: false,
      detail: `${python} has USDT markers but they do not fire without a profile hook (self-test saw ${t.seen} of ${SELFTEST_CALLS} calls)`,
    };
  return { ok: true, detail: `USDT probes of ${python} fire (self-test saw ${t.seen} calls)` };
}

export async function checkProfiler(ctx: CheckContext<Options>): Promise<CheckResult> {
  const technique = 'profiler';
  const gdb = await ctx.which('gdb');
  if (!gdb)
    return {
      status: 'fixable',
      technique,
      detail: 'gdb is needed to load the profiler into interpreters',
      hint: 'apt-get install gdb',
    };
  const bpftrace = await ctx.which('bpftrace');
  if (!bpftrace)
    return {
      status: 'fixable',
      technique,
      detail: 'bpftrace is needed to catch new interpreters of the target at start',
      hint: 'apt-get install bpftrace',
    };
  for (const [tool, pkg] of [
    ['setpriv', 'util-linux'],
    ['timeout', 'coreutils'],
  ] as const)
    if (!(await ctx.which(tool)))
      return {
        status: 'fixable',
        technique,
        detail: `${tool} is needed to run gdb and bpftrace safely`,
        hint: `apt-get install ${pkg}`,
      };
  if (!ctx.isRoot)
    return {
      status: 'fixable',
      technique,
      detail: 'attaching to processes (ptrace, bpftrace) needs root',
      hint: 'run as root',
    };
  try {
    if (readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8').trim() === '3')
      return {
        status: 'unavailable',
        technique,
        detail: 'kernel.yama.ptrace_scope is 3: no process can be attached',
      };
  } catch {
    // no Yama: ptrace follows the usual rules
  }
  if (ctx.depth === 'full') {
    const r = await ctx.exec(
      [gdb, '-batch', '-nx', '-ex', 'python print("gdb-python-ok")'],
      30_000,
    );
    if (!r.stdout.includes('gdb-python-ok'))
      return { status: 'unavailable', technique, detail: `${gdb} has no Python scripting support` };
  }
  return {
    status: 'ok',
    technique,
    detail:
      'in-process profiler (sys.setprofile / sys.monitoring), loaded with gdb; new interpreters caught at exec with bpftrace',
  };
}
