// Shared by the report-*.test.ts files: run the built CLI against a scratch store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect } from 'vitest';
import { runCli } from '@scalpels/core/testing';

export const cli = fileURLToPath(new URL('../cli/dist/main.js', import.meta.url));
export const artifacts = fileURLToPath(new URL('../test-artifacts/', import.meta.url));

export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function scalpels(args: string[], env: Record<string, string> = {}) {
  return runCli(args, { cli, env: { NO_COLOR: '1', ...env } });
}

export async function ok(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await scalpels(args, env);
  expect(r.exitCode, `scalpels ${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

/** A Python workload calling getppid() N times (an exact syscall count) and burning some CPU. */
export const pyWork = (n: number, cpu = 2_000_000): string[] => [
  'python3',
  '-c',
  `import os\nfor _ in range(${n}): os.getppid()\nsum(i*i for i in range(${cpu}))`,
];
