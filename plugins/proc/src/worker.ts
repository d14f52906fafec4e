import { basename, join } from 'node:path';
import { UserError, type OptionValues, type WorkerContext, type WorkerSpec } from '@scalpels/core';

/** Where the compiled sampler lives inside the package. */
export function samplerPath(pluginDir: string): string {
  return join(pluginDir, 'dist', 'sampler.js');
}

export function workerSpec(options: OptionValues, ctx: WorkerContext): WorkerSpec {
  const system = options.system !== false;
  const pids = ctx.target.kind === 'none' ? [] : ctx.target.pids;
  if (!system && pids.length === 0)
    throw new UserError(
      'proc: system=false needs a target (--pid, --service or run): nothing to sample',
    );
  const argv = [
    process.execPath,
    samplerPath(ctx.pluginDir),
    '--interval-ms',
    String(options.interval ?? 1000),
  ];
  for (const pid of pids) argv.push('--pid', String(pid));
  // The root of `scalpels run` is the core's launcher (a node process), not the workload: count
  // only what descends from it, and label the tree with the workload's command.
  if (ctx.target.kind === 'run' && pids.length === 1) {
    argv.push('--children-only', String(pids[0]));
    const command = ctx.target.command?.[0];
    if (command) argv.push('--name', `${pids[0]}=${basename(command)}`);
  }
  if (!system) argv.push('--no-system');
  for (const d of (options.devices as readonly string[] | undefined) ?? [])
    argv.push('--device', d);
  for (const i of (options.interfaces as readonly string[] | undefined) ?? [])
    argv.push('--interface', i);
  return {
    argv,
    // The sampler prints `# ready` once it holds its baseline reading.
    ready: { stdout: /^# ready$/, timeoutMs: 15_000 },
    // On SIGTERM it takes a final sample (a /proc scan: milliseconds) and exits 0.
    stop: { signal: 'SIGTERM', graceMs: 3000 },
  };
}
