/**
 * Real `scalpels agent` processes for the integration tests: started, awaited on what they say
 * (never a fixed wait), and their children read from /proc.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';

const cli = fileURLToPath(new URL('../cli/dist/main.js', import.meta.url));

export interface RunningAgent {
  proc: ResultPromise;
  /** Everything the agent printed so far. */
  output: () => string;
}

/**
 * Starts `scalpels agent ARGS` (pushed onto `procs`, for the caller's afterAll) and waits until
 * it prints `readyText` (where it listens); rejects with its output if it exits first.
 */
export async function startAgent(
  procs: ResultPromise[],
  args: string[],
  env: Record<string, string> = {},
  readyText = 'socket ',
): Promise<RunningAgent> {
  const proc = execa(process.execPath, [cli, 'agent', ...args], {
    reject: false,
    all: true,
    env: { NO_COLOR: '1', ...env },
  });
  procs.push(proc);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    proc.all!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes(readyText)) resolve();
    });
    void proc.then(() => reject(new Error(`agent exited: ${out}`)));
  });
  return { proc, output: () => out };
}

/** Processes whose parent is `pid`. */
export function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'latin1');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}
