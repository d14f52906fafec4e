import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sample, TraceRecord } from '@scalpels/core';

export const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(pluginDir, 'test', 'fixtures', 'getppid-loop.c');

export function which(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const isRoot = process.getuid?.() === 0;
export const tracefsMounted = existsSync('/sys/kernel/tracing/events/raw_syscalls/sys_exit');

/** Compiles the workload into a fresh folder, under `name` (which becomes its comm). */
export function buildWorkload(name = 'getppid-loop'): string {
  const dir = mkdtempSync(join(tmpdir(), 'scalpels-syscalls-'));
  const bin = join(dir, 'getppid-loop');
  execFileSync('cc', ['-O2', '-o', bin, source]);
  if (name === 'getppid-loop') return bin;
  const renamed = join(dir, name);
  copyFileSync(bin, renamed);
  execFileSync('chmod', ['+x', renamed]);
  return renamed;
}

export interface Workload {
  child: ChildProcess;
  pid: number;
  /** Lets the workload start its calls; resolves with the pids seen and the exit code. */
  go(): Promise<number>;
}

/** Starts the workload, stopped on its stdin until go(). */
export function startWorkload(bin: string, n: number, m = 0): Workload {
  const child = spawn(bin, [String(n), String(m)], { stdio: ['pipe', 'ignore', 'inherit'] });
  const exited = new Promise<number>((resolve) =>
    child.once('exit', (code) => resolve(code ?? -1)),
  );
  return {
    child,
    pid: child.pid!,
    go: async () => {
      child.stdin!.end('x');
      return exited;
    },
  };
}

export function samples(records: readonly TraceRecord[], series: string): Sample[] {
  return records.filter((r): r is Sample => r.kind === 'sample' && r.series === series);
}

/** Sum of a series over the samples whose labels include `match`. */
export function total(
  records: readonly TraceRecord[],
  series: string,
  match: Record<string, string> = {},
): number {
  return samples(records, series)
    .filter((s) => Object.entries(match).every(([k, v]) => s.labels?.[k] === v))
    .reduce((a, s) => a + s.value, 0);
}
