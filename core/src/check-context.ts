import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { CheckContext, OptionValues } from './api.js';

/** The CheckContext plugins probe the machine with. */
export function checkContext(
  options: OptionValues,
  depth: 'quick' | 'full',
  pluginDir?: string,
): CheckContext {
  return {
    options,
    depth,
    pluginDir,
    isRoot: process.getuid?.() === 0,
    which: async (binary) => which(binary),
    exec: async (argv, timeoutMs = 10_000) => {
      const { execa } = await import('execa');
      const [file, ...args] = argv;
      const r = await execa(file!, args, {
        reject: false,
        timeout: timeoutMs,
        stdin: 'ignore',
        all: false,
      });
      return {
        exitCode: r.exitCode ?? (r.failed ? 127 : 0),
        stdout: String(r.stdout ?? ''),
        stderr: String(r.stderr ?? (r.failed ? r.shortMessage : '')),
      };
    },
  };
}

export function which(binary: string, path = process.env.PATH ?? ''): string | undefined {
  if (binary.includes('/')) return canExec(binary) ? binary : undefined;
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, binary);
    if (canExec(file)) return file;
  }
  return undefined;
}

function canExec(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
