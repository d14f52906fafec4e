import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sample, TraceRecord } from '@scalpels/core';

export const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..');
export const fixture = (name: string): string => join(pluginDir, 'test', 'fixtures', name);

export const isRoot = process.getuid?.() === 0;
export const hasBinary = (name: string): boolean => spawnSync('which', [name]).status === 0;

/** Interpreters to run the tracer against: Debian's and pyenv builds, when present. */
export function interpreters(): { name: string; path: string }[] {
  const out: { name: string; path: string }[] = [];
  if (existsSync('/usr/bin/python3'))
    out.push({ name: 'debian-python3', path: '/usr/bin/python3' });
  for (const v of ['3.8', '3.9', '3.10', '3.11', '3.12', '3.13']) {
    const r = spawnSync(
      'sh',
      ['-c', `ls -d /root/.pyenv/versions/${v}.*/bin/python${v} 2>/dev/null | head -1`],
      {
        encoding: 'utf8',
      },
    );
    const p = r.stdout.trim();
    if (p) out.push({ name: `pyenv-${v}`, path: p });
  }
  return out;
}

/** A child process whose stdout is collected, with a way to wait for a line. */
export class Child {
  out = '';
  readonly proc: ChildProcess;
  readonly closed: Promise<number | null>;

  constructor(argv: readonly string[], opts: { uid?: number; gid?: number; cwd?: string } = {}) {
    this.proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], ...opts });
    this.proc.stdout!.on('data', (c: Buffer) => (this.out += c.toString()));
    this.closed = new Promise((resolve) => this.proc.on('close', (code) => resolve(code)));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  async waitFor(text: string, timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.out.includes(text)) {
      if (Date.now() > end)
        throw new Error(`timed out waiting for ${JSON.stringify(text)}; output: ${this.out}`);
      if (this.proc.exitCode !== null)
        throw new Error(`exited before ${JSON.stringify(text)}; output: ${this.out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The last JSON line printed. */
  result(): Record<string, unknown> {
    const line = this.out
      .trim()
      .split('\n')
      .reverse()
      .find((l) => l.startsWith('{'));
    return JSON.parse(line ?? '{}') as Record<string, unknown>;
  }

  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
  }
}

/** Sum of a series per label value. */
export function sums(
  records: readonly TraceRecord[],
  series: string,
  by = 'function',
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of records)
    if (r.kind === 'sample' && r.series === series) {
      const k = (r as Sample).labels?.[by] ?? '';
      out[k] = (out[k] ?? 0) + r.value;
    }
  return out;
}

export function events(records: readonly TraceRecord[], type: string): TraceRecord[] {
  return records.filter((r) => r.kind === 'event' && r.type === type);
}

/** State letter of a process (R, S, T, Z...), or undefined once it is gone. */
export function procState(pid: number): string | undefined {
  try {
    return /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}
