/**
 * `--service mariadbd` / `--pid N`: the target is the database server. When no connection option
 * is given, the tracer connects to the unix socket (else the TCP port) the target listens on.
 * A `run` target is the workload, a client: the server is then found by the connection options.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import type { Target } from '@scalpels/core';
import { engineOf } from './connection.js';
import type { Options } from './options.js';

/** Connection options that come from the target (never credentials). */
export interface TargetConnection {
  socket?: string;
  host?: string;
  port?: number;
}

function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) out.add(m[1]!);
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // gone, or not ours to read
  }
  return out;
}

/** Listening unix socket paths and TCP ports of the processes. */
export function listeners(pids: readonly number[]): { unix: string[]; tcp: number[] } {
  const unix = new Set<string>();
  const tcp = new Set<number>();
  for (const pid of pids) {
    const inodes = socketInodes(pid);
    if (inodes.size === 0) continue;
    try {
      for (const line of readFileSync(`/proc/${pid}/net/unix`, 'utf8').split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        // Flags 00010000: accepting connections; the path is the eighth field.
        if (f.length >= 8 && f[3] === '00010000' && inodes.has(f[6]!) && f[7]!.startsWith('/'))
          unix.add(f[7]!);
      }
      for (const table of ['tcp', 'tcp6']) {
        for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
          const f = line.trim().split(/\s+/);
          if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!))
            tcp.add(parseInt(f[1]!.split(':').at(-1)!, 16));
        }
      }
    } catch {
      // gone
    }
  }
  return { unix: [...unix].sort(), tcp: [...tcp].sort((a, b) => a - b) };
}

/**
 * Where to connect for a pid/service target, when the options say nothing about it; throws a
 * one-line error when the target is not a server of the engine.
 */
export function targetConnection(
  options: Options,
  target: Target | undefined,
): TargetConnection | undefined {
  if (!target || (target.kind !== 'pid' && target.kind !== 'service') || target.pids.length === 0)
    return undefined;
  const given = (['host', 'socket', 'port', 'defaults-file'] as const).some(
    (k) => options[k] !== undefined && options[k] !== '',
  );
  if (given) return undefined;
  const { unix, tcp } = listeners(target.pids);
  const engine = engineOf(options);
  const pgSocket = unix.map((p) => /^(.*)\/\.s\.PGSQL\.(\d+)$/.exec(p)).find((m) => m);
  const otherSocket = unix.find((p) => !/\.s\.PGSQL\./.test(p));
  const wrong =
    engine === 'mysql' ? pgSocket !== undefined : !pgSocket && otherSocket !== undefined;
  if (wrong)
    throw new Error(
      `target ${target.description} is a ${engine === 'mysql' ? 'PostgreSQL' : 'MySQL/MariaDB'} server: set engine=${engine === 'mysql' ? 'postgresql' : 'mysql'}`,
    );
  if (engine === 'postgresql') {
    if (pgSocket) return { host: pgSocket[1]!, port: Number(pgSocket[2]) };
    if (tcp.length) return { host: '127.0.0.1', port: tcp.includes(5432) ? 5432 : tcp[0]! };
  } else {
    if (otherSocket) return { socket: otherSocket };
    if (tcp.length) return { host: '127.0.0.1', port: tcp.includes(3306) ? 3306 : tcp[0]! };
  }
  throw new Error(
    `target ${target.description} listens on no ${engine === 'mysql' ? 'MySQL/MariaDB' : 'PostgreSQL'} socket: is it the database server? (a client goes in client=)`,
  );
}

/** The options with the target's socket or port filled in. */
export function withTarget(options: Options, target: Target | undefined): Options {
  const c = targetConnection(options, target);
  return c ? { ...options, ...c } : options;
}
