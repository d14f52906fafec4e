/**
 * Running the `scalpels` command in tests, as a user would: a child process of the same Node, its
 * output collected whole and its exit code returned (never thrown), under a timeout.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface RunCliOptions {
  /** The CLI's entry script; default: `cliEntry()`. */
  cli?: string;
  cwd?: string;
  /** Added to the test's environment (or the whole environment with `extendEnv: false`); `undefined` removes a variable. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Default true. */
  extendEnv?: boolean;
  /** Written to stdin, which is then closed; without it stdin is /dev/null. */
  input?: string;
  /** SIGTERM after this long (the result says `timedOut`); 0: no timeout. Default 120000. */
  timeoutMs?: number;
}

export interface CliResult {
  /** Undefined when the process ended by a signal. */
  exitCode: number | undefined;
  signal: NodeJS.Signals | undefined;
  /** Without its final newline. */
  stdout: string;
  /** Without its final newline. */
  stderr: string;
  timedOut: boolean;
}

/**
 * The `scalpels` entry script (`bin.scalpels` of `@scalpels/cli`) found in the `node_modules`
 * folders from `from` (default: the working directory) upwards, or `$SCALPELS_CLI` when set.
 * Undefined when there is none, or it is not built: gate CLI tests with `capability()` on it.
 */
export function cliEntry(from: string = process.cwd()): string | undefined {
  const env = process.env.SCALPELS_CLI;
  if (env) return existsSync(env) ? env : undefined;
  for (let dir = from; ; dir = dirname(dir)) {
    const pkgFile = join(dir, 'node_modules', '@scalpels', 'cli', 'package.json');
    if (existsSync(pkgFile)) {
      const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { bin?: Record<string, string> };
      const entry = join(dirname(pkgFile), pkg.bin?.scalpels ?? 'dist/main.js');
      return existsSync(entry) ? realpathSync(entry) : undefined;
    }
    if (dirname(dir) === dir) return undefined;
  }
}

/** Runs `scalpels ARGS...` with this Node and waits for it to end. Never rejects for an exit code. */
export function runCli(args: readonly string[], opts: RunCliOptions = {}): Promise<CliResult> {
  const cli = opts.cli ?? cliEntry();
  if (!cli) return Promise.reject(new Error('the scalpels CLI is not found or not built'));
  const env: Record<string, string | undefined> = {
    ...(opts.extendEnv === false ? {} : process.env),
    ...opts.env,
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], {
      cwd: opts.cwd,
      env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    let timedOut = false;
    const timeoutMs = opts.timeoutMs ?? 120_000;
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            child.kill('SIGTERM');
          }, timeoutMs)
        : undefined;
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const text = (b: Buffer[]): string =>
        Buffer.concat(b)
          .toString('utf8')
          .replace(/\r?\n$/, '');
      resolve({
        exitCode: code ?? undefined,
        signal: signal ?? undefined,
        stdout: text(out),
        stderr: text(err),
        timedOut,
      });
    });
  });
}

/** Runs `scalpels ARGS...` and returns its stdout; throws with its stderr when it exits non-zero. */
export async function runCliOk(args: readonly string[], opts: RunCliOptions = {}): Promise<string> {
  const r = await runCli(args, opts);
  if (r.exitCode !== 0)
    throw new Error(
      `scalpels ${args.join(' ')} exited ${r.exitCode ?? r.signal}${r.timedOut ? ' (timed out)' : ''}\n${r.stderr}`,
    );
  return r.stdout;
}
