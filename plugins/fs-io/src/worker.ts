import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readyLine, type WorkerContext, type WorkerSpec } from '@scalpels/core';
import { processTree } from '@scalpels/core/procfs';
import { openFiles } from './procfs.js';
import { buildScript, type ScriptSeed } from './script.js';
import type { Options } from './options.js';

/**
 * At most this many already-open files are handed to the program at start: each one costs a
 * map update in BEGIN and each unique path a printf, and bpftrace 0.17 compiles a large BEGIN
 * slowly (300 files and 160 names added 8-10 s to the start under load).
 */
const MAX_SEEDED_FILES = 1024;

/**
 * What the program starts with: the target's processes (roots and current descendants), their
 * names, and the files they already have open, so that I/O on those files is named although
 * their open was not seen. System-wide, nothing is seeded (it would make the start slow on a
 * busy node): processes are named when they open, fork, exec or use a descriptor with no name.
 */
function targetSeed(ctx: WorkerContext): ScriptSeed {
  if (ctx.target.kind === 'none') return { pids: [], files: [], comms: [] };
  const procs = processTree(ctx.target.roots ?? ctx.target.pids);
  if (procs.length === 0)
    throw new Error(`fs-io: target ${ctx.target.description}: no live process`);
  const files: ScriptSeed['files'][number][] = [];
  for (const p of procs) {
    if (files.length >= MAX_SEEDED_FILES) break;
    for (const f of openFiles(p.pid, MAX_SEEDED_FILES - files.length))
      files.push({ pid: p.pid, ...f });
  }
  return {
    pids: procs.map((p) => p.pid),
    files,
    comms: procs.map((p) => ({ pid: p.pid, comm: p.comm })),
  };
}

export function bpftraceWorker(options: Options, ctx: WorkerContext): WorkerSpec {
  const template = readFileSync(join(ctx.pluginDir, 'scripts', 'fs-io.bt'), 'utf8');
  const script = buildScript(template, targetSeed(ctx), {
    systemWide: ctx.target.kind === 'none',
    intervalMs: options.interval,
    latency: options.latency,
    vfs: options.vfs,
    // The register layout is x86-64's, and reaching it needs the kernel's BTF (task_struct).
    regs: options.registers && process.arch === 'x64' && existsSync('/sys/kernel/btf/vmlinux'),
  });
  const path = join(ctx.runtimeDir, 'fs-io.bt');
  writeFileSync(path, script, { mode: 0o600 });
  return {
    argv: ['bpftrace', '-B', 'line', path],
    env: {
      BPFTRACE_STRLEN: String(options['path-max']),
      BPFTRACE_MAP_KEYS_MAX: String(options['max-keys']),
    },
    // SIGINT makes bpftrace run END, which prints the final totals.
    stop: { signal: 'SIGINT', graceMs: 10_000 },
    // Printed by bpftrace's own first epoll_wait, after every probe is attached.
    ready: { stdout: /^@@ready$/, timeoutMs: 60_000 },
  };
}

export function procIoWorker(options: Options, ctx: WorkerContext): WorkerSpec {
  const sampler = join(ctx.pluginDir, 'dist', 'worker-main.js');
  // PID:START: the sampler does not take a process that got a root's pid since for that root.
  const started = new Map((ctx.target.roots ?? []).map((r) => [r.pid, r.startTime]));
  const pids =
    ctx.target.kind === 'none'
      ? []
      : ctx.target.pids.map((p) => (started.has(p) ? `${p}:${started.get(p)}` : String(p)));
  return {
    argv: [process.execPath, sampler, String(options.interval), ...pids],
    stop: { signal: 'SIGTERM', graceMs: 5000 },
    ready: { stdout: readyLine(), timeoutMs: 30_000 },
  };
}

export function worker(options: Options, ctx: WorkerContext): WorkerSpec {
  return ctx.technique === 'proc-io' ? procIoWorker(options, ctx) : bpftraceWorker(options, ctx);
}
