import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readyLine, type WorkerContext, type WorkerSpec } from '@scalpels/core';
import { buildRules } from './presets.js';
import type { WorkerConfig } from './worker-config.js';
import type { Options } from './options.js';

export const READY_LINE = readyLine();

export function profilerWorker(options: Options, ctx: WorkerContext): WorkerSpec {
  const config: WorkerConfig = {
    target: {
      kind: ctx.target.kind,
      pids: ctx.target.pids,
      ...(ctx.target.roots ? { roots: ctx.target.roots } : {}),
      description: ctx.target.description,
    },
    rules: buildRules(options),
    threads: options.thread,
    timing: options.timing,
    exceptions: options.exceptions,
    intervalMs: options.interval,
    top: options.top,
    follow: options.follow,
    attachTimeoutMs: options['attach-timeout'],
    agentFile: join(ctx.pluginDir, 'scripts', 'pycalls_agent.py'),
    gdb: 'gdb',
    bpftrace: 'bpftrace',
  };
  const configFile = join(ctx.runtimeDir, 'python-calls.json');
  writeFileSync(configFile, JSON.stringify(config), { mode: 0o600 });
  // The compiled worker, also when the manifest itself is loaded from TypeScript sources (tests).
  const main = join(ctx.pluginDir, 'dist', 'worker-main.js');
  return {
    argv: [process.execPath, main, configFile],
    // Detaching waits for each agent's last counts (at most ~5 s); then the worker exits by itself.
    stop: { signal: 'SIGTERM', graceMs: 10_000 },
    ready: { stdout: READY_LINE, timeoutMs: 60_000 },
  };
}
