import { basename, join } from 'node:path';
import { readyLine, UserError, type WorkerContext, type WorkerSpec } from '@scalpels/core';
import type { Options } from './options.js';

/** Where the compiled sampler lives inside the package. */
export function samplerPath(pluginDir: string): string {
  return join(pluginDir, 'dist', 'worker-main.js');
}

export function workerSpec(options: Options, ctx: WorkerContext): WorkerSpec {
  const system = options.system;
  const pids = ctx.target.kind === 'none' ? [] : ctx.target.pids;
  if (!system && pids.length === 0)
    throw new UserError(
      'proc: system=false needs a target (--pid, --service or run): nothing to sample',
    );
  const argv = [
    process.execPath,
    samplerPath(ctx.pluginDir),
    '--interval-ms',
    String(options.interval),
  ];
  // With its start time, a root whose pid was recycled before the sampler's baseline is not taken.
  const started = new Map((ctx.target.roots ?? []).map((r) => [r.pid, r.startTime]));
  for (const pid of pids) {
    const start = started.get(pid);
    argv.push('--pid', start === undefined ? String(pid) : `${pid}:${start}`);
  }
  // Trees of a service are labelled with its name (`keystone`, not `uwsgi_python311`).
  for (const r of ctx.target.roots ?? [])
    if (r.service && pids.includes(r.pid)) argv.push('--name', `${r.pid}=${r.service}`);
  // The root of `scalpels run` is the core's launcher (a node process), not the workload: count
  // only what descends from it, and label the tree with the workload's command.
  if (ctx.target.kind === 'run' && pids.length === 1) {
    argv.push('--children-only', String(pids[0]));
    const command = ctx.target.command?.[0];
    if (command) argv.push('--name', `${pids[0]}=${basename(command)}`);
  }
  if (!system) argv.push('--no-system');
  for (const d of options.devices ?? []) argv.push('--device', d);
  for (const i of options.interfaces ?? []) argv.push('--interface', i);
  return {
    argv,
    // The sampler prints the ready line once it holds its baseline reading.
    ready: { stdout: readyLine(), timeoutMs: 15_000 },
    // On SIGTERM it takes a final sample (a /proc scan: milliseconds) and exits 0.
    stop: { signal: 'SIGTERM', graceMs: 3000 },
  };
}
