import type { Readable } from 'node:stream';
import type { WorkerSpec } from './api.js';

export interface WorkerProcess {
  readonly pid: number;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves when the process has exited and been reaped. */
  readonly exited: Promise<{
    exitCode: number | null;
    signal: NodeJS.Signals | null;
    error?: string;
  }>;
  /** Signals the worker's whole process group; false when it is gone. */
  signalGroup(signal: NodeJS.Signals): boolean;
}

export interface ProcessSpawner {
  spawn(spec: WorkerSpec): Promise<WorkerProcess>;
}

/** Sends a signal to a process group; false when no process of the group is left. */
export function killGroup(pgid: number, signal: NodeJS.Signals | number): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Spawns workers with execa: argv only (never a shell), detached into their own process group
 * so that a stop reaches the worker's children too, stdout/stderr as raw byte streams.
 */
export class ExecaSpawner implements ProcessSpawner {
  async spawn(spec: WorkerSpec): Promise<WorkerProcess> {
    const [file, ...args] = spec.argv;
    if (!file) throw new Error('worker argv is empty');
    // Loaded here, not at start-up: commands that spawn nothing should not pay for execa.
    const { execa } = await import('execa');
    const child = execa(file, args, {
      shell: false,
      detached: true,
      cleanup: false,
      reject: false,
      buffer: false,
      stripFinalNewline: false,
      encoding: 'buffer',
      env: spec.env ? { ...spec.env } : undefined,
      extendEnv: true,
      cwd: spec.cwd,
      stdin: spec.stdin !== undefined ? 'pipe' : 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
    });
    const spawnError = new Promise<string>((resolve) =>
      child.once('error', (e) => resolve(e.message)),
    );
    if (child.pid === undefined) {
      const message = await spawnError;
      throw new Error(`cannot start ${file}: ${message}`);
    }
    if (spec.stdin !== undefined) child.stdin?.end(spec.stdin);
    const pid = child.pid;
    const exited = child.then(
      (r) => ({
        exitCode: r.exitCode ?? null,
        signal: (r.signal as NodeJS.Signals | undefined) ?? null,
        error: r.failed && r.exitCode === undefined && !r.signal ? r.shortMessage : undefined,
      }),
      (e: Error) => ({ exitCode: null, signal: null, error: e.message }),
    );
    return {
      pid,
      stdout: child.stdout!,
      stderr: child.stderr!,
      exited,
      signalGroup: (signal) => killGroup(pid, signal),
    };
  }
}
