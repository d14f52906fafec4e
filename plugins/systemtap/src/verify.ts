import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync,
  constants,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { CheckContext, VerifyStage } from '@scalpels/core';
import { buildTreeReleases, checkSystemtap, probeHost, type Host } from './check.js';
import { optionProblem, stapCommand } from './command.js';
import type { Options } from './options.js';

const NO_TARGET = { kind: 'none', pids: [], description: 'validation' } as const;

/** The first error lines of stap's stderr, on one line. */
export function stapError(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(
      (l) => l !== '' && !/^(Tip:|Pass \d|WARNING: Kernel function symbol table missing)/.test(l),
    );
  const errors = lines.filter((l) => /error|ERROR|failed/.test(l));
  return (errors.length > 0 ? errors : lines).slice(0, 3).join(' | ') || 'no message';
}

function run(
  argv: string[],
  cwd: string,
  timeoutMs: number,
): Promise<{ exitCode: number; stderr: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    execFile(
      argv[0]!,
      argv.slice(1),
      { cwd, timeout: timeoutMs, maxBuffer: 16 << 20 },
      (err, _stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({
          exitCode: code,
          stderr: String(stderr) + (err && !stderr ? err.message : ''),
          timedOut: err?.killed === true,
        });
      },
    );
  });
}

/**
 * The first elaboration against a build tree compiles stap's tracepoint query modules (about 170
 * small kernel builds, cached afterwards in ~/.systemtap): minutes on a quiet machine, many more
 * on a busy one. Generous, so that a slow machine is not mistaken for a bad script.
 */
const PASS_TIMEOUT_MS = 30 * 60_000;

/** Whether any module at all compiles for (release, runtime): tells a broken toolchain from a bad script. */
const controlCompiles = new Map<string, Promise<{ ok: boolean; error: string }>>();

/**
 * The answer lives on disk too: a failing kernel build takes about a minute, and neither stap nor
 * the headers change between two `validate` runs. The key covers what would change the answer:
 * the stap binary, its runtime sources and the build tree's config.
 */
function controlCacheFile(
  stap: string,
  runtimeArgs: string[],
  releaseArgs: string[],
  release: string,
): string {
  const mtime = (p: string): number => {
    try {
      return statSync(p).mtimeMs;
    } catch {
      return 0;
    }
  };
  const key = createHash('sha256')
    .update(
      JSON.stringify([
        stap,
        mtime(stap),
        mtime('/usr/share/systemtap/runtime'),
        runtimeArgs,
        releaseArgs,
        mtime(
          release.startsWith('/') ? `${release}/.config` : `/lib/modules/${release}/build/.config`,
        ),
      ]),
    )
    .digest('hex')
    .slice(0, 16);
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'scalpels', `systemtap-control-${key}.json`);
}

function controlCompile(
  stap: string,
  runtimeArgs: string[],
  releaseArgs: string[],
  release: string,
): Promise<{ ok: boolean; error: string }> {
  const id = [...runtimeArgs, ...releaseArgs].join(' ');
  let p = controlCompiles.get(id);
  if (!p) {
    const cache = controlCacheFile(stap, runtimeArgs, releaseArgs, release);
    p = (async () => {
      try {
        const known = JSON.parse(readFileSync(cache, 'utf8')) as { ok: boolean; error: string };
        if (typeof known.ok === 'boolean' && typeof known.error === 'string') return known;
      } catch {
        // Not cached yet.
      }
      const r = await withTempDir((dir) =>
        run(
          [
            stap,
            ...runtimeArgs,
            ...releaseArgs,
            '-p4',
            '-m',
            'scalpels_control',
            '-e',
            'probe begin { exit() }',
          ],
          dir,
          300_000,
        ),
      );
      const result = { ok: r.exitCode === 0, error: stapError(r.stderr) };
      try {
        mkdirSync(dirname(cache), { recursive: true });
        writeFileSync(cache, `${JSON.stringify(result)}\n`);
      } catch {
        // A read-only home only costs the next run a compile.
      }
      return result;
    })();
    controlCompiles.set(id, p);
  }
  return p;
}

/**
 * Whether this stap resolves kernel tracepoints against (runtime, build tree) at all. stap -p2
 * resolves `kernel.trace(...)` (and the syscall tapset, which falls back on it without kernel
 * debug info) by compiling tracepoint query modules with the kernel's build tree: when that build
 * fails (headers that do not match the compiler, a partial headers package, a build killed under
 * load), every kernel probe ends in "no match", whatever the script. Cached per process only: a
 * fixed headers package can make it pass the next time.
 */
const controlElaborations = new Map<string, Promise<{ ok: boolean; error: string }>>();
// A handler that does something: stap drops empty probes and then finds "no probes".
export const CONTROL_PROBE = 'probe kernel.trace("raw_syscalls:sys_enter") { exit() }';

function controlElaborate(
  stap: string,
  runtimeArgs: string[],
  releaseArgs: string[],
): Promise<{ ok: boolean; error: string }> {
  const id = [...runtimeArgs, ...releaseArgs].join(' ');
  let p = controlElaborations.get(id);
  if (!p) {
    p = withTempDir((dir) =>
      run([stap, ...runtimeArgs, ...releaseArgs, '-p2', '-e', CONTROL_PROBE], dir, PASS_TIMEOUT_MS),
    ).then((r) => ({ ok: r.exitCode === 0, error: stapError(r.stderr) }));
    controlElaborations.set(id, p);
  }
  return p;
}

/** Probe point families that resolve without the kernel's build tree (user space, timers, begin/end). */
const TREE_FREE_PROBES = new Set([
  'begin',
  'end',
  'error',
  'never',
  'timer',
  'process',
  'procfs',
  'java',
  'python2',
  'python3',
]);

/**
 * Whether stap's pass-2 errors are all kernel probe points that did not resolve ("no match" on a
 * kernel, syscall or other kernel tapset family): errors that a working build tree might not give.
 * Any other semantic error (an unknown function, a type error, a user-space probe that does not
 * match) is the script's own.
 */
export function onlyKernelResolution(stderr: string): boolean {
  const errors = stderr.split('\n').filter((l) => l.startsWith('semantic error:'));
  if (errors.length === 0) return false;
  let resolved = 0;
  for (const line of errors) {
    const m = /^semantic error: while resolving probe point: identifier '([^']+)'/.exec(line);
    if (m) {
      if (TREE_FREE_PROBES.has(m[1]!)) return false;
      resolved++;
    } else if (!/^semantic error: (no match|SYSTEM: )/.test(line)) {
      return false;
    }
  }
  return resolved > 0;
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'scalpels-stap-verify-'));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `scalpels plugins validate systemtap script=...`: takes the script through stap's passes as far
 * as this machine allows, without loading anything: parse (-p1), elaborate (-p2), translate to C
 * (-p3, kernel runtime), compile (-p4). Without a build tree for the running kernel it uses the
 * newest one installed (Debian's linux-headers-*), and says so.
 */
export async function verifySystemtap(
  options: Options,
  ctx: CheckContext<Options>,
  host: Host = probeHost(),
  /** Build trees to fall back on when the running kernel has none: releases or directories, best first. */
  trees: readonly string[] = buildTreeReleases(),
): Promise<VerifyStage[]> {
  const stages: VerifyStage[] = [];
  const skipRest = (names: string[], detail: string): void => {
    for (const stage of names) stages.push({ stage, status: 'skipped', detail });
  };
  const passes = [
    'parse (stap -p1)',
    'elaborate (stap -p2)',
    'translate (stap -p3)',
    'compile (stap -p4)',
  ];

  const problem = optionProblem(options);
  let cmd;
  try {
    if (problem) throw new Error(problem);
    cmd = stapCommand(options, NO_TARGET, { module: 'scalpels_validate' });
    accessSync(cmd.script, constants.R_OK);
  } catch (e) {
    stages.push({ stage: 'script', status: 'failed', detail: (e as Error).message });
    skipRest(passes, 'no script to check');
    return stages;
  }
  stages.push({
    stage: 'script',
    status: 'passed',
    detail: `${cmd.script} (runtime ${cmd.runtime})`,
  });

  const stap = await ctx.which('stap');
  if (!stap) {
    skipRest(passes, 'stap is not installed (apt-get install -y systemtap)');
    return stages;
  }

  let releaseArgs: string[] = [];
  let against = `the running kernel ${host.release}`;
  if (!host.buildTree) {
    const other = trees[0];
    if (!other) {
      skipRest(
        passes,
        `no kernel build tree on this machine (the running kernel ${host.release} has none); install one to validate against, e.g. apt-get install -y linux-headers-amd64`,
      );
      return stages;
    }
    releaseArgs = ['-r', other];
    against = `kernel headers of ${other} (the running kernel ${host.release} has no build tree)`;
  }
  const runtimeArgs = cmd.runtime === 'bpf' ? ['--runtime=bpf'] : [];
  // stapCommand put the runtime flag first; keep the rest (module, flags, script, args) as they are.
  const rest = cmd.args.filter((a) => a !== '--runtime=bpf');

  // One stap run up to the last pass before compiling; its "Pass N: ... failed" line tells which
  // pass stopped it, so passes 1..3 cost one elaboration instead of three.
  const last = cmd.runtime === 'bpf' ? 2 : 3;
  const r = await withTempDir((dir) =>
    run([stap, ...runtimeArgs, ...releaseArgs, `-p${last}`, ...rest], dir, PASS_TIMEOUT_MS),
  );
  if (r.timedOut) {
    skipRest(
      passes.slice(1),
      `stap -p${last} did not finish within ${PASS_TIMEOUT_MS / 60_000} minutes against ${against} (a first run builds tracepoint query modules; is the machine overloaded?)`,
    );
    stages.splice(1, 0, { stage: passes[0]!, status: 'skipped', detail: 'stap did not finish' });
    return stages;
  }
  const failedPass =
    r.exitCode === 0 ? undefined : Number(/^Pass (\d): .*failed/m.exec(r.stderr)?.[1] ?? 1);
  // A pass-2 failure made only of kernel probes that did not resolve is the script's fault only
  // if kernel probes resolve here at all: ask with a one-line control script.
  let unresolvable: string | undefined;
  if (failedPass === 2 && onlyKernelResolution(r.stderr)) {
    const control = await controlElaborate(stap, runtimeArgs, releaseArgs);
    if (!control.ok)
      unresolvable =
        `kernel probes cannot be resolved against ${against} on this machine: even \`${CONTROL_PROBE}\` does not elaborate ` +
        `(stap resolves kernel tracepoints by building query modules with that build tree, and they did not build: ${control.error}). ` +
        `The script parsed; its kernel probes were not checked: validate it on a node running a distribution kernel with its own headers installed`;
  }
  const after = unresolvable
    ? 'kernel probes could not be elaborated here'
    : `stap -p${failedPass} failed`;
  for (let pass = 1; pass <= 3; pass++) {
    const stage = passes[pass - 1]!;
    if (pass === 3 && cmd.runtime === 'bpf') {
      stages.push({
        stage,
        status: 'skipped',
        detail: 'the bpf runtime has no C translation pass',
      });
    } else if (failedPass === undefined || pass < failedPass) {
      stages.push({ stage, status: 'passed', detail: `against ${against}` });
    } else if (pass === failedPass && unresolvable) {
      stages.push({ stage, status: 'skipped', detail: unresolvable });
    } else if (pass === failedPass) {
      stages.push({
        stage,
        status: 'failed',
        detail: `against ${against}: ${stapError(r.stderr)}`,
      });
    } else {
      stages.push({ stage, status: 'skipped', detail: after });
    }
  }
  if (failedPass !== undefined) {
    stages.push({ stage: passes[3]!, status: 'skipped', detail: after });
    return stages;
  }

  const compileStage = passes[3]!;
  const target = releaseArgs[1] ?? host.release;
  // An empty script first (cached): when even that does not build, the toolchain is at fault.
  const control = await controlCompile(
    stap,
    runtimeArgs,
    releaseArgs,
    releaseArgs[1] ?? host.release,
  );
  if (!control.ok) {
    stages.push({
      stage: compileStage,
      status: 'skipped',
      detail: `this stap cannot compile even an empty script for ${target}, so the script was not compiled (toolchain and headers do not match: ${control.error})`,
    });
  } else {
    const compiled = await withTempDir((dir) =>
      run([stap, ...runtimeArgs, ...releaseArgs, '-p4', ...rest], dir, 300_000),
    );
    stages.push(
      compiled.exitCode === 0
        ? { stage: compileStage, status: 'passed', detail: `against ${against}` }
        : {
            stage: compileStage,
            status: 'failed',
            detail: `against ${against}: ${stapError(compiled.stderr)}`,
          },
    );
  }

  const here = await checkSystemtap({ ...ctx, options, depth: 'full' }, host);
  stages.push({
    stage: 'run here',
    status: here.status === 'ok' ? 'passed' : 'skipped',
    detail:
      here.status === 'ok' ? `this machine can load it (not started): ${here.detail}` : here.detail,
  });
  return stages;
}
