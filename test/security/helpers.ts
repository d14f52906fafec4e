import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { capability } from '@scalpels/core/testing';
import { hasRedisServer as hasPrivateRedisServer } from '../private-redis.js';

/** The attacks run as this unprivileged user. */
export const ATTACKER = ['--reuid=nobody', '--regid=nogroup', '--clear-groups'];

export const cli = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));

export const isRoot = (process.getuid?.() ?? 0) === 0;

export const hasSetpriv = capability(
  'setpriv as root',
  isRoot && existsSync('/usr/bin/setpriv'),
  'the attacks run as nobody through setpriv, which needs root and util-linux',
);

/** A private redis-server can be started (see privateRedisServers), and redis-cli attacks it. */
export const hasRedisServer =
  hasPrivateRedisServer() &&
  capability('redis-cli', existsSync('/usr/bin/redis-cli'), 'redis-cli is not installed');

/** Runs a command as nobody (no groups): what any local user can do. */
export function asNobody(cmd: string, args: string[], input?: string) {
  return execa('setpriv', [...ATTACKER, cmd, ...args], { reject: false, input, env: {} });
}

/** A scratch folder that nobody can traverse (0711) but not list or write. */
export function scratchDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `scalpels-sec-${name}-`));
  chmodSync(dir, 0o711);
  return dir;
}

/** A cluster key file as an operator makes it: 32 random bytes, base64, mode 0600, root's. */
export function makeKeyFile(dir: string, name = 'cluster.key'): string {
  const file = join(dir, name);
  writeFileSync(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  return file;
}

export const portUp = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

/** Waits for a condition, polling; fails with `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resident memory of a process, in bytes. */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

export { childrenOf, startAgent, type RunningAgent } from '../agent-process.js';
