import { join } from 'node:path';
import { readyLine, type WorkerContext, type WorkerSpec } from '@scalpels/core';
import { engineOf } from './connection.js';
import { withTarget } from './target.js';
import type { Options } from './options.js';

/** The technique to run with: the one check() chose, else the option, else the engine's first. */
export function techniqueFor(options: Options, chosen?: string): string {
  if (chosen) return chosen;
  const forced = options.technique;
  if (forced !== 'auto') return forced;
  return engineOf(options) === 'postgresql' ? 'pg-stat-statements' : 'mysql-digest';
}

export function workerSpec(options: Options, ctx: WorkerContext): WorkerSpec {
  const technique = techniqueFor(options, ctx.technique);
  const effective = withTarget(options, ctx.target);
  return {
    // A Node worker; its configuration (no credentials: those stay in the environment or the
    // option file) goes through the environment, keeping argv short.
    argv: [process.execPath, join(ctx.pluginDir, 'dist', 'worker-main.js')],
    env: { SCALPELS_SQL_QUERIES_CONFIG: JSON.stringify({ options: effective, technique }) },
    stop: { signal: 'SIGTERM', graceMs: 5000 },
    // Printed after the baseline, below the `ready` line that says what the collector reads.
    ready: { stdout: readyLine(), timeoutMs: 20_000 },
  };
}
