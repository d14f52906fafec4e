import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OptionValues, PluginManifest, Target, TraceRecord, UndoAction } from '../api.js';
import { validateOptions } from '../options.js';
import { WorkerRunner, type TracerOutcome } from '../runner.js';
import { ExecaSpawner } from '../spawner.js';
import { memorySetupContext } from './setup-context.js';

export interface RunWorkerOptions {
  /** Raw options as a user would give them. */
  options?: Record<string, unknown>;
  target?: Target;
  /** Absolute path of the plugin package (where its scripts are). */
  pluginDir: string;
  technique?: string;
  /**
   * Called once the worker is ready; the worker is stopped when the returned promise settles.
   * `live.records` grows as the worker's records are parsed, so a test can wait for what it
   * expects (`waitFor(() => live.records.some(...))`) instead of sleeping a fixed time.
   */
  during?: (live: { readonly records: readonly TraceRecord[] }) => Promise<unknown>;
  /** Stop after this long when `during` is not given. Default 2000 ms. */
  durationMs?: number;
  /**
   * Run the plugin's `setup()` first (its journal kept in `RunWorkerResult.journal`) and undo every
   * journaled change after the worker stopped, newest first, as the core does.
   */
  setup?: boolean;
}

export interface RunWorkerResult {
  outcome: TracerOutcome;
  records: TraceRecord[];
  options: OptionValues;
  /** What setup() journaled (with `setup: true`), all undone by the time this returns. */
  journal: UndoAction[];
}

/**
 * Polls `condition` until it holds, every `everyMs`; throws after `timeoutMs` naming `what`. For
 * tests on a busy host: a condition waited for with a generous bound instead of a fixed sleep.
 */
export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 120_000,
  everyMs = 50,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Runs a plugin's real worker through the core's runner, collecting its records in memory. */
export async function runWorker(
  manifest: PluginManifest,
  run: RunWorkerOptions,
): Promise<RunWorkerResult> {
  const options = validateOptions(manifest, run.options ?? {});
  const runtimeDir = mkdtempSync(join(tmpdir(), `scalpels-test-${manifest.name}-`));
  const target = run.target ?? { kind: 'none', pids: [], description: 'system-wide' };
  const ctx = {
    target,
    taskId: 'test',
    tracerId: 1,
    technique: run.technique,
    runtimeDir,
    pluginDir: run.pluginDir,
  };
  const records: TraceRecord[] = [];
  const journal: UndoAction[] = [];
  try {
    if (run.setup && manifest.setup)
      await manifest.setup(options, memorySetupContext(ctx, journal));
    const spec = await manifest.worker(options, ctx);
    const parser = manifest.parser({ options, technique: run.technique, startedAt: Date.now() });
    const runner = new WorkerRunner(new ExecaSpawner(), spec, parser, manifest.schema, {
      write: (batch) => void records.push(...batch),
    });
    await runner.start();
    try {
      if (run.during) await run.during({ records });
      else await new Promise((r) => setTimeout(r, run.durationMs ?? 2000));
    } finally {
      await runner.stop();
    }
    return { outcome: await runner.done, records, options, journal };
  } finally {
    for (const action of [...journal].reverse()) await manifest.undo?.(action, options);
    rmSync(runtimeDir, { recursive: true, force: true });
  }
}
