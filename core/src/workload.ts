import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { LineSplitter } from './lines.js';

export interface WorkloadExit {
  exitCode: number | null;
  signal: string | null;
  /** Set when the command could not be started (not found, not executable). */
  error?: string;
}

/**
 * The command of `scalpels run`, started through the launcher (core/launcher/launch.mjs): the
 * launcher is the target's root process, so tracers attach before the workload starts and its
 * CPU time stays accounted after it exits, until `release()`.
 */
export class Workload {
  private readonly messages: string[] = [];
  private waiters: (() => void)[] = [];

  private constructor(
    private readonly launcher: ChildProcess,
    private readonly control: Socket,
    readonly command: readonly string[],
  ) {
    const lines = new LineSplitter((line) => {
      this.messages.push(line);
      for (const w of this.waiters.splice(0)) w();
    });
    control.on('data', (chunk: Buffer) => lines.push(chunk));
    control.on('error', () => {});
    control.on('close', () => {
      this.messages.push('closed');
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Starts the launcher (the workload itself waits for `go()`). */
  static async launch(command: readonly string[]): Promise<Workload> {
    const script = createRequire(import.meta.url).resolve('@scalpels/core/launcher');
    const launcher = spawn(process.execPath, [script, ...command], {
      stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
    });
    const control = launcher.stdio[3] as Socket;
    const w = new Workload(launcher, control, command);
    const first = await w.next();
    if (first !== 'ready') throw new Error(`workload launcher did not start (${first})`);
    return w;
  }

  get pid(): number {
    return this.launcher.pid!;
  }

  /** Starts the command; resolves with its pid, or rejects when it cannot be started. */
  async go(): Promise<number> {
    this.control.write('go\n');
    const msg = await this.next();
    if (msg.startsWith('started ')) return Number(msg.slice(8));
    throw new Error(msg.startsWith('error ') ? msg.slice(6) : `launcher: ${msg}`);
  }

  /** Resolves when the command has exited (the launcher stays until `release()`). */
  async exited(): Promise<WorkloadExit> {
    for (;;) {
      const msg = await this.next();
      if (msg.startsWith('exited ')) {
        const [code, signal] = msg.slice(7).split(' ');
        return { exitCode: code ? Number(code) : null, signal: signal || null };
      }
      if (msg.startsWith('error ')) return { exitCode: 127, signal: null, error: msg.slice(6) };
      if (msg === 'closed')
        return { exitCode: null, signal: null, error: 'launcher exited unexpectedly' };
    }
  }

  /** Passes a signal to the command (the launcher sends it; SIGKILL included). */
  signal(sig: NodeJS.Signals): void {
    if (!this.control.destroyed) this.control.write(`signal ${sig}\n`);
  }

  /** Lets the launcher exit, and waits until it has. */
  async release(): Promise<void> {
    if (this.launcher.exitCode !== null || this.launcher.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => this.launcher.once('exit', () => resolve()));
    this.control.write('release\n');
    this.control.end();
    await gone;
  }

  private async next(): Promise<string> {
    while (this.messages.length === 0)
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.messages.shift()!;
  }
}
