/**
 * What the security tests share: an unprivileged attacker (nobody, through setpriv) preparing
 * files, a root agent to attack over its unix socket and over TCP with the token, and a bpftrace
 * watcher that sees every file the agent's process tree opens and every program it runs.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { capability } from '@scalpels/core/testing';

export const cli = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));
export const NOBODY = 65534;

const has = (bin: string): boolean => spawnSync('which', [bin]).status === 0;

export const canAttack = capability(
  'root, setpriv and bpftrace',
  process.getuid?.() === 0 && has('setpriv') && has('bpftrace'),
  'the attacks need root (to run the agent), setpriv (to act as nobody) and bpftrace (to see what root opened or ran)',
);

/** Runs argv as nobody:nogroup with no supplementary groups, as an unprivileged local user. */
export function asNobody(argv: readonly string[], input?: string) {
  return spawnSync(
    'setpriv',
    ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', ...argv],
    { encoding: 'utf8', input, timeout: 60_000 },
  );
}

/** A folder nobody owns (in the shared /tmp), where the attacker prepares things. */
export function attackerDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'scalpels-attacker-'));
  chownSync(dir, NOBODY, NOBODY);
  chmodSync(dir, 0o755);
  return dir;
}

/**
 * A program written by nobody that, if anyone ran it, would create `marker` (and as root, prove
 * that root ran it). Returns its path.
 */
export function markerProgram(dir: string, name: string, marker: string): string {
  const path = join(dir, name);
  const r = asNobody([
    'sh',
    '-c',
    `printf '#!/bin/sh\\ntouch %s\\necho "uid $(id -u)" > %s\\n' "$1" "$1" > "$2" && chmod 755 "$2"`,
    'sh',
    marker,
    path,
  ]);
  if (r.status !== 0) throw new Error(`nobody could not write ${path}: ${r.stderr}`);
  return path;
}

/** Paths the watcher reports whoever opens them (see settle). */
const SENTINEL = '/tmp/scalpels-watch-sentinel';
let sentinels = 0;

export interface Watcher {
  /** Paths opened and programs executed by the watched tree so far: `open PATH` / `exec PATH`. */
  lines(): string[];
  stop(): Promise<void>;
}

/**
 * bpftrace on openat and execve of every process whose ancestry includes `rootPid` (the agent:
 * its workers and checks are its descendants). Resolves once the probes are attached.
 */
export async function watchTree(rootPid: number): Promise<Watcher> {
  const block = (probe: string, what: string): string => `
tracepoint:syscalls:${probe}
{
  $t = curtask; $hit = 0;
  unroll(16) { if ($t->tgid == ${rootPid}) { $hit = 1; } $t = $t->real_parent; }
  if ($hit) { printf("${what} %s\\n", str(args->filename)); }
}`;
  // The test's own opens too, for the sentinels of settle().
  const prog = `${block('sys_enter_openat', 'open')}
${block('sys_enter_execve', 'exec')}
tracepoint:syscalls:sys_enter_openat /pid == ${process.pid}/ { printf("open %s\\n", str(args->filename)); }
BEGIN { printf("ready\\n"); }
`;
  const proc: ChildProcess = spawn('bpftrace', ['-e', prog], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BPFTRACE_STRLEN: '64' },
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const end = Date.now() + 120_000;
  while (!out.includes('ready\n')) {
    if (proc.exitCode !== null || Date.now() > end)
      throw new Error(`bpftrace watcher did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    lines: () => out.split('\n').filter((l) => l.startsWith('open ') || l.startsWith('exec ')),
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const closed = new Promise((r) => proc.once('close', r));
      // bpftrace (0.17) loses a SIGINT that arrives outside its poll: say it again until it
      // ends, then kill it (its last lines are not needed once the test is over).
      const again = setInterval(() => proc.kill('SIGINT'), 500);
      const kill = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      proc.kill('SIGINT');
      try {
        await closed;
      } finally {
        clearInterval(again);
        clearTimeout(kill);
      }
    },
  };
}

/**
 * Returns once the watcher has reported everything the tree did before this call: the test opens
 * a sentinel path (the watcher reports the test process's opens too), twice in a row (bpftrace drains every
 * CPU's buffer each round, so once the second sentinel is printed, all earlier events are too).
 */
export async function settle(w: Watcher): Promise<void> {
  for (let round = 0; round < 2; round++) {
    const mark = `${SENTINEL}-${process.pid}-${++sentinels}`;
    const end = Date.now() + 60_000;
    while (!w.lines().includes(`open ${mark}`)) {
      if (Date.now() > end) throw new Error('bpftrace watcher stopped reporting');
      try {
        closeSync(openSync(mark, 'r'));
      } catch {
        // ENOENT: the openat happened, which is all the watcher needs
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** A TCP listener that records every connection made to it (a URL root must never call). */
export async function listener(host: string): Promise<{
  port: number;
  hits: () => number;
  close: () => Promise<void>;
}> {
  let hits = 0;
  const server = net.createServer((s) => {
    hits++;
    s.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    hits: () => hits,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

export function writeRootFile(path: string, text: string, mode: number): string {
  writeFileSync(path, text, { mode });
  chmodSync(path, mode);
  return path;
}

export function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}
