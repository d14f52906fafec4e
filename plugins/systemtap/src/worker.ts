import { join } from 'node:path';
import type { WorkerContext, WorkerSpec } from '@scalpels/core';
import { READY_LINE, moduleName, optionProblem, stapCommand } from './command.js';
import { requireTrusted } from './trust.js';
import type { Options } from './options.js';

const READY = new RegExp(`^${READY_LINE}$`);

/**
 * The worker is a small Node supervisor (dist/supervise.js) running stap: it waits for stap to
 * unload its module when stopped, reports a module that stays loaded, and turns stap's skipped
 * probes into drop notices.
 */
export function systemtapWorker(options: Options, ctx: WorkerContext): WorkerSpec {
  const problem = optionProblem(options);
  if (problem) throw new Error(problem);
  // Again at use: check() ran earlier, and the worker may be restarted much later.
  requireTrusted(options, ctx.policy);
  const module = moduleName(ctx.taskId, ctx.tracerId);
  const cmd = stapCommand(options, ctx.target, { pluginDir: ctx.pluginDir, module, ready: true });
  const stopTimeoutMs = options['stop-timeout'];
  const argv = [
    process.execPath,
    join(ctx.pluginDir, 'dist', 'supervise.js'),
    '--module',
    module,
    '--runtime',
    cmd.runtime,
    '--stop-timeout',
    String(stopTimeoutMs),
  ];
  if (cmd.extraRoots.length > 0) argv.push('--extra-roots', cmd.extraRoots.join(','));
  argv.push('--', 'stap', ...cmd.args);
  return {
    argv,
    // stap -m NAME (bpf runtime) writes NAME.bo into the current directory.
    cwd: ctx.runtimeDir,
    stop: { signal: 'SIGINT', graceMs: stopTimeoutMs + 5_000 },
    // Scripts may end themselves (`exit()` after a while): exit code 0 then means done, not failed.
    mayExit: true,
    // Building a kernel module takes seconds to minutes on a cold cache.
    ready: { stdout: READY, timeoutMs: options['start-timeout'] },
  };
}
