import { openStore } from './store/index.js';
import type { Store } from './store/types.js';
import type { TrustPolicy } from './api.js';

export interface Config {
  storeUrl: string;
  /** This node's name (hostname by default). */
  node: string;
  /** Folders whose node_modules (and those above) hold plugins: the installation. */
  pluginSearchFrom: readonly string[];
  env: NodeJS.ProcessEnv;
  /** What root allowed at start (`--allow-scripts`, `--allow-guru`); absent: nothing. */
  policy?: TrustPolicy;
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

export { checkContext, which } from './check-context.js';
