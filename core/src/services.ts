import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { CheckContext, OptionValues } from './api.js';
import { openStore } from './store/index.js';
import type { Store } from './store/types.js';

export interface Config {
  storeUrl: string;
  /** This node's name (hostname by default). */
  node: string;
  /** Folders whose node_modules (and those above) hold plugins: the installation. */
  pluginSearchFrom: readonly string[];
  env: NodeJS.ProcessEnv;
}

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

const LEVELS: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Logs to stderr, one line per message; `SCALPELS_LOG=debug|info|warn|error` sets the level. */
export class StderrLogger implements Logger {
  private readonly min: number;
  constructor(level: string | undefined = process.env.SCALPELS_LOG) {
    this.min = LEVELS[(level as LogLevel) ?? 'warn'] ?? LEVELS.warn;
  }
  debug(msg: string): void {
    this.log('debug', msg);
  }
  info(msg: string): void {
    this.log('info', msg);
  }
  warn(msg: string): void {
    this.log('warn', msg);
  }
  error(msg: string): void {
    this.log('error', msg);
  }
  private log(level: LogLevel, msg: string): void {
    if (LEVELS[level] >= this.min)
      process.stderr.write(`scalpels: ${level === 'info' ? '' : `${level}: `}${msg}\n`);
  }
}

/** Opens the configured store on first use: commands that never touch it never create it. */
export class StoreProvider {
  private store: Store | undefined;
  constructor(private readonly url: string) {}
  get(): Store {
    this.store ??= openStore(this.url);
    return this.store;
  }
  get opened(): boolean {
    return this.store !== undefined;
  }
  async close(): Promise<void> {
    await this.store?.close();
    this.store = undefined;
  }
}

/** The CheckContext plugins probe the machine with. */
export function checkContext(options: OptionValues, depth: 'quick' | 'full'): CheckContext {
  return {
    options,
    depth,
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
