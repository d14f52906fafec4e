import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  CheckContext,
  OptionValues,
  Sample,
  SetupContext,
  TraceRecord,
  UndoAction,
} from '@scalpels/core';
import plugin from '../src/index.js';

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

/** A CheckContext like the core's: real exec and PATH lookup. */
export function checkContext(options: OptionValues, depth: 'quick' | 'full'): CheckContext {
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
  options: OptionValues,
  taskId: string,
  technique?: string,
): Promise<{ journal: UndoAction[]; ctx: SetupContext }> {
  const journal: UndoAction[] = [];
  const ctx: SetupContext = {
    target: { kind: 'none', pids: [], description: 'system-wide' },
    taskId,
    tracerId: 1,
    technique,
    runtimeDir: '/tmp',
    pluginDir,
    journal: async (a) => void journal.push(structuredClone(a)),
  };
  await plugin.setup!(options, ctx);
  return { journal, ctx };
}

/** Undoes a journal newest first, as the core does on stop and on recover. */
export async function runUndo(
  journal: readonly UndoAction[],
  options: OptionValues,
): Promise<void> {
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
