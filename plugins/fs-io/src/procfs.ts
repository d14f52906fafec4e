import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Small readers of /proc shared by the worker setup and the proc-io sampler. Never throw. */

export interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
}

export function readStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm is in parentheses and may itself contain spaces and parentheses: take the last ')'.
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const rest = text.slice(close + 2).split(' ');
    return { pid, ppid: Number(rest[1]), comm };
  } catch {
    return undefined;
  }
}

export function listPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((n) => /^\d+$/.test(n))
      .map(Number);
  } catch {
    return [];
  }
}

/** The roots and every live descendant of them. */
export function descendants(roots: readonly number[]): ProcStat[] {
  const all = listPids()
    .map(readStat)
    .filter((s): s is ProcStat => s !== undefined);
  const children = new Map<number, ProcStat[]>();
  for (const s of all) {
    const list = children.get(s.ppid);
    if (list) list.push(s);
    else children.set(s.ppid, [s]);
  }
  const byPid = new Map(all.map((s) => [s.pid, s]));
  const out: ProcStat[] = [];
  const seen = new Set<number>();
  const queue = roots.map((pid) => byPid.get(pid)).filter((s): s is ProcStat => s !== undefined);
  while (queue.length > 0) {
    const s = queue.shift()!;
    if (seen.has(s.pid)) continue;
    seen.add(s.pid);
    out.push(s);
    queue.push(...(children.get(s.pid) ?? []));
  }
  return out;
}

/** Open descriptors of a process that name a file by absolute path (pipes, sockets left out). */
export function openFiles(pid: number, limit: number): { fd: number; path: string }[] {
  const out: { fd: number; path: string }[] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const name of fds) {
    if (out.length >= limit) break;
    try {
      const path = readlinkSync(`/proc/${pid}/fd/${name}`);
      if (path.startsWith('/'))
        out.push({ fd: Number(name), path: path.replace(/ \(deleted\)$/, '') });
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

export interface ProcIo {
  rchar: number;
  wchar: number;
  syscr: number;
  syscw: number;
  read_bytes: number;
  write_bytes: number;
}

export function readIo(pid: number): ProcIo | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/io`, 'utf8');
    const v: Record<string, number> = {};
    for (const line of text.split('\n')) {
      const [k, n] = line.split(': ');
      if (k && n) v[k] = Number(n);
    }
    return {
      rchar: v.rchar ?? 0,
      wchar: v.wchar ?? 0,
      syscr: v.syscr ?? 0,
      syscw: v.syscw ?? 0,
      read_bytes: v.read_bytes ?? 0,
      write_bytes: v.write_bytes ?? 0,
    };
  } catch {
    return undefined;
  }
}
