import {
  execFile,
  execFileSync,
  spawn,
  type ChildProcess,
  type StdioOptions,
} from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CheckContext, Sample, SetupContext, TraceRecord, UndoAction } from '@scalpels/core';
import { capability, cliEntry, memorySetupContext, runCliOk } from '@scalpels/core/testing';
import plugin from '../src/index.js';
import type { Options } from '../src/options.js';

export const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..');

export function brokerUp(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port: 5672 });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export function rabbitmqctlWorks(): boolean {
  try {
    execFileSync('rabbitmqctl', ['-q', 'list_vhosts'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

export const workerBuilt = (): boolean => existsSync(join(pluginDir, 'dist', 'worker-main.js'));

export function nftTables(): string[] {
  try {
    return execFileSync('nft', ['list', 'tables'], { stdio: 'pipe' })
      .toString()
      .split('\n')
      .map((l) => l.trim().split(' ').at(-1)!)
      .filter(Boolean);
  } catch {
    return [];
  }
}

/** A CheckContext<Options> like the core's: real exec and PATH lookup. */
export function checkContext(options: Options, depth: 'quick' | 'full'): CheckContext<Options> {
  return {
    options,
    depth,
    isRoot: process.getuid?.() === 0,
    exec: (argv, timeoutMs) =>
      new Promise((resolve) => {
        execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs ?? 10_000 }, (err, stdout, stderr) =>
          resolve({
            exitCode: err ? (typeof err.code === 'number' ? err.code : 127) : 0,
            stdout: String(stdout),
            stderr: String(stderr),
          }),
        );
      }),
    which: async (bin) => {
      try {
        return execFileSync('which', [bin], { stdio: 'pipe' }).toString().trim() || undefined;
      } catch {
        return undefined;
      }
    },
  };
}

/** Runs the plugin's setup() as the core would, keeping the journal in memory. */
export async function runSetup(
  options: Options,
  taskId: string,
  technique?: string,
): Promise<{ journal: UndoAction[]; ctx: SetupContext }> {
  const journal: UndoAction[] = [];
  const ctx: SetupContext = memorySetupContext(
    {
      target: { kind: 'none', pids: [], description: 'system-wide' },
      taskId,
      tracerId: 1,
      technique,
      runtimeDir: '/tmp',
      pluginDir,
    },
    journal,
  );
  await plugin.setup!(options, ctx);
  return { journal, ctx };
}

/** Undoes a journal newest first, as the core does on stop and on recover. */
export async function runUndo(journal: readonly UndoAction[], options: Options): Promise<void> {
  for (const a of [...journal].reverse()) await plugin.undo!(a, options);
}

/** Sum of a counter series, per value of one label. */
export function sums(
  records: readonly TraceRecord[],
  series: string,
  label = 'method',
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of records)
    if (r.kind === 'sample' && r.series === series) {
      const k = (r as Sample).labels?.[label] ?? '';
      out[k] = (out[k] ?? 0) + r.value;
    }
  return out;
}

/** Last value of a gauge series for a label value. */
export function last(
  records: readonly TraceRecord[],
  series: string,
  method: string,
): number | undefined {
  let v: number | undefined;
  for (const r of records)
    if (r.kind === 'sample' && r.series === series && r.labels?.method === method) v = r.value;
  return v;
}

/** The `scalpels` entry script; undefined when it is not built. */
export const cli = cliEntry();

/** The oslo.messaging-like workload the CLI tests trace (`node oslo-workload.mjs VHOST K C DELAY TRUTH`). */
export const osloWorkload = join(pluginDir, 'test', 'fixtures', 'oslo-workload.mjs');

/**
 * Whether the worker tests can run here: a broker, rabbitmqctl and the worker built. Under
 * `CI=true` a missing one throws (capability()).
 */
export async function brokerTestsCanRun(): Promise<boolean> {
  return (
    capability('rabbitmq', await brokerUp(), 'no RabbitMQ listening on 127.0.0.1:5672') &&
    capability(
      'rabbitmqctl',
      rabbitmqctlWorks(),
      'rabbitmqctl missing or not allowed (run as root)',
    ) &&
    capability(
      'worker build',
      workerBuilt(),
      'dist/worker-main.js missing: run npx tsc -b in plugins/rpc-calls',
    )
  );
}

/** Whether the CLI tests can run here: the CLI built, and what brokerTestsCanRun() needs. */
export async function cliTestsCanRun(): Promise<boolean> {
  return (
    capability(
      'scalpels CLI built',
      cli !== undefined,
      'no built @scalpels/cli found: build the workspace (npx tsc -b)',
    ) && (await brokerTestsCanRun())
  );
}

export interface ReportSeries {
  name: string;
  kind: string;
  unit: string;
  labels: Record<string, string>;
  sum?: number;
  last?: number;
}

/** A task's report as `scalpels report --format json` prints it: the parts the CLI tests read. */
export interface CliReport {
  format: string;
  task: { id: string };
  tracers: {
    id: number;
    tracer: string;
    status: string;
    error?: string | null;
    parseErrors: number;
    series: ReportSeries[];
    events: { count: number; top: { key: string; count: number; meanMs?: number }[] };
  }[];
}

/** The series `name` of a report's (first and only) tracer, of one method when given. */
export function reportSeries(r: CliReport, name: string, method?: string): ReportSeries[] {
  return r.tracers[0]!.series.filter(
    (s) => s.name === name && (method === undefined || s.labels.method === method),
  );
}

export interface CliScratch {
  /** The data folder (XDG_DATA_HOME: the default store is in it); `remove()` deletes it. */
  readonly dir: string;
  /** `scalpels ARGS...` run to completion: its stdout; throws with its stderr when it exits non-zero. */
  ok(args: readonly string[], extraEnv?: Record<string, string>): Promise<string>;
  /** `scalpels report TASK --format json` (of `store` when given), parsed. */
  report(task: string, store?: string): Promise<CliReport>;
  /** A long-lived `scalpels ARGS...` the test itself signals, kills or waits for. */
  start(args: readonly string[], stdio: StdioOptions): ChildProcess;
  remove(): void;
}

/** `scalpels` runs on a scratch data folder of their own, without colours. */
export function cliScratch(prefix: string): CliScratch {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const env = { XDG_DATA_HOME: dir, NO_COLOR: '1' };
  const ok = (args: readonly string[], extraEnv: Record<string, string> = {}): Promise<string> =>
    runCliOk(args, { cli, env: { ...env, ...extraEnv } });
  return {
    dir,
    ok,
    report: async (task, store) =>
      JSON.parse(
        await ok(['report', task, '--format', 'json', ...(store ? ['--store', store] : [])]),
      ) as CliReport,
    start: (args, stdio) => {
      if (!cli) throw new Error('the scalpels CLI is not built');
      return spawn(process.execPath, [cli, ...args], { env: { ...process.env, ...env }, stdio });
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
