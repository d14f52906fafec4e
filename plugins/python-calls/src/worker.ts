import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OptionValues, WorkerContext, WorkerSpec } from '@scalpels/core';
import { buildRules } from './presets.js';
import type { WorkerConfig } from './worker-config.js';

export const READY_LINE = /^\{"t":"ready"/;

export function profilerWorker(options: OptionValues, ctx: WorkerContext): WorkerSpec {
  const list = (k: string): string[] => [...((options[k] as readonly string[] | undefined) ?? [])];
  const config: WorkerConfig = {
    target: { kind: ctx.target.kind, pids: ctx.target.pids, description: ctx.target.description },
    rules: buildRules({
      function: list('function'),
      module: list('module'),
      file: list('file'),
      preset: list('preset'),
    }),
    timing: options.timing === true,
    exceptions: options.exceptions === true,
    intervalMs: Number(options.interval ?? 1000),
    top: Number(options.top ?? 0),
    follow: options.follow !== false,
    attachTimeoutMs: Number(options.attachTimeout ?? 10_000),
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
