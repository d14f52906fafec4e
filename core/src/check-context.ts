import { accessSync, constants } from 'node:fs';
import { availableParallelism } from 'node:os';
import { delimiter, join } from 'node:path';
import type { CheckContext, OptionValues, TrustPolicy } from './api.js';

/** What a check's probes met, for the caller to tell a transient failure from a real one. */
export interface ProbeLog {
  /** A probe timed out, was killed, or could not be spawned for lack of resources. */
  transient: boolean;
  /** One line on the last transient failure. */
  why?: string;
}

// Probes run a few at a time: fifty starts at once must not spawn fifty Node processes that then
// all miss their timeouts on a busy host (the timeout counts from the spawn, not the queue).
const MAX_PROBES = Math.max(2, availableParallelism());
let runningProbes = 0;
const queued: (() => void)[] = [];

async function probeSlot(): Promise<() => void> {
  if (runningProbes >= MAX_PROBES) await new Promise<void>((r) => queued.push(r));
  runningProbes++;
  return () => {
    runningProbes--;
    queued.shift()?.();
  };
}

/** Spawn failures that say "not now" rather than "never". */
const TRANSIENT_SPAWN = new Set(['EAGAIN', 'ENOMEM', 'EMFILE', 'ENFILE', 'EBUSY', 'ETXTBSY']);

/**
 * The CheckContext plugins probe the machine with. `probes` collects whether a probe failed in a
 * transient way (timeout, resources); `timeoutScale` gives probes more time on a retry.
 */
export function checkContext<V = OptionValues>(
  options: V,
  depth: 'quick' | 'full',
  pluginDir?: string,
  policy?: TrustPolicy,
  probes?: ProbeLog,
  timeoutScale = 1,
): CheckContext<V> {
  return {
    options,
    depth,
    pluginDir,
    policy,
    isRoot: process.getuid?.() === 0,
    which: async (binary) => which(binary),
    exec: async (argv, timeoutMs = 10_000) => {
      const { execa } = await import('execa');
      const [file, ...args] = argv;
      const release = await probeSlot();
      let r;
      try {
        r = await execa(file!, args, {
          reject: false,
          timeout: timeoutMs * timeoutScale,
          stdin: 'ignore',
          all: false,
        });
      } finally {
        release();
      }
      const code = (r as { code?: string }).code;
      const transient =
        r.timedOut === true ||
        (code !== undefined && TRANSIENT_SPAWN.has(code)) ||
        (r.exitCode === undefined && r.signal !== undefined && !r.isCanceled);
      const why = r.timedOut
        ? `${file} timed out after ${timeoutMs * timeoutScale} ms`
        : r.failed && r.exitCode === undefined
          ? r.shortMessage
          : undefined;
      if (transient && probes) {
        probes.transient = true;
        probes.why = why ?? `${file} failed`;
      }
      return {
        // 124 for a timeout (as timeout(1)), 127/126 when the program is missing/not executable.
        exitCode:
          r.exitCode ??
          (r.timedOut
            ? 124
            : code === 'ENOENT'
              ? 127
              : code === 'EACCES'
                ? 126
                : r.failed
                  ? 125
                  : 0),
        stdout: String(r.stdout ?? ''),
        stderr: String(r.stderr || (why ?? '')),
        ...(transient ? { transient: true } : {}),
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
