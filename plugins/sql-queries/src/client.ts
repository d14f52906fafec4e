/**
 * `client=<pid|name>`: narrows statements to the connections of a client process (nova-api, ...)
 * by matching the local TCP ports of its sockets (and those of its descendants) with the client
 * ports the server lists for its connections (MySQL processlist HOST `ip:port`, PostgreSQL
 * pg_stat_activity.client_port). Unix-socket connections carry no port and cannot be matched.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { processTree, readCmdline, scanProcesses } from '@scalpels/core/procfs';
import type { Connection as MysqlConnection } from 'mysql2/promise';
import type { Client as PgClient } from 'pg';

export interface ThreadMatcher {
  matches(thread: number): boolean;
  /** Looks at the client's sockets and the server's connections again. */
  refresh(): Promise<void>;
  /** Client processes found at the last refresh. */
  readonly pids: readonly number[];
  close(): void;
}

/** Connections are looked at this often besides each poll, so short-lived ones are matched too. */
const REFRESH_MS = 250;

/** Pids of processes matching each spec (a pid, or a name matched on comm and argv[0]), with descendants. */
export function clientPids(specs: readonly string[]): number[] {
  const procs = scanProcesses();
  const roots = new Set<number>();
  for (const spec of specs) {
    if (/^\d+$/.test(spec)) roots.add(Number(spec));
    else
      for (const p of procs.values()) {
        if (p.comm === spec) {
          roots.add(p.pid);
          continue;
        }
        const argv0 = readCmdline(p.pid).slice(0, 2).join(' ');
        if (argv0.split(/[\s/]/).includes(spec)) roots.add(p.pid);
      }
  }
  return processTree([...roots], procs).map((p) => p.pid);
}

/** Local TCP ports of the sockets the given processes hold open. */
export function localTcpPorts(pids: readonly number[]): Set<number> {
  const ports = new Set<number>();
  for (const pid of pids) {
    const inodes = new Set<string>();
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
          if (m) inodes.add(m[1]!);
        } catch {
          // closed meanwhile
        }
      }
      if (inodes.size === 0) continue;
      for (const table of ['tcp', 'tcp6']) {
        let text = '';
        try {
          text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
        } catch {
          continue;
        }
        for (const line of text.split('\n').slice(1)) {
          const f = line.trim().split(/\s+/);
          if (f.length > 9 && inodes.has(f[9]!)) ports.add(parseInt(f[1]!.split(':')[1]!, 16));
        }
      }
    } catch {
      // process gone
    }
  }
  return ports;
}

export async function clientThreadMatcher(
  specs: readonly string[],
  /** The collector's current connection (it changes when the collector reconnects). */
  connection: () => MysqlConnection | PgClient,
): Promise<ThreadMatcher> {
  const known = new Map<number, boolean>();
  let pids: number[] = [];
  const connections = async (): Promise<{ thread: number; port: number }[]> => {
    const db = connection();
    if ('escapeLiteral' in db) {
      const r = await db.query(
        'SELECT pid, client_port FROM pg_stat_activity WHERE client_port > 0',
      );
      return (r.rows as { pid: number; client_port: number }[]).map((x) => ({
        thread: x.pid,
        port: x.client_port,
      }));
    }
    const [rows] = await db.query('SELECT ID, HOST FROM information_schema.PROCESSLIST');
    return (rows as { ID: number | string; HOST: string | null }[]).flatMap((x) => {
      const m = /:(\d+)$/.exec(x.HOST ?? '');
      return m ? [{ thread: Number(x.ID), port: Number(m[1]) }] : [];
    });
  };
  const refresh = async (): Promise<void> => {
    pids = clientPids(specs);
    const ports = localTcpPorts(pids);
    for (const c of await connections())
      if (!known.get(c.thread)) known.set(c.thread, ports.has(c.port));
  };
  await refresh();
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    refresh()
      .catch(() => undefined)
      .finally(() => (busy = false));
  }, REFRESH_MS);
  timer.unref();
  return {
    matches: (thread) => known.get(thread) === true,
    refresh,
    get pids() {
      return pids;
    },
    close: () => clearInterval(timer),
  };
}
