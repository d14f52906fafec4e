/**
 * The one reader of /proc/PID files and walker of process trees (`@scalpels/core/procfs`), for
 * the core, plugins and their workers. node's standard library only: workers are separate node
 * processes started often and import this alone.
 *
 * One rule for pid reuse: a process is its pid and its start time (field 22 of /proc/PID/stat).
 * A recycled pid is never taken for the process that had it before: a root given with its start
 * time is found only while that process lives, and a process is a child of the process with its
 * ppid only if it did not start before it (a parent is never younger than its child; a younger
 * process under the parent's pid took a pid recycled while /proc was being read).
 *
 * Formats: proc(5) and the kernel's Documentation/filesystems/proc.rst. Readers never throw: a
 * process may exit at any moment, and what cannot be read is undefined (or empty).
 */
import { closeSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';

/** Clock ticks per second of every tick count of /proc (USER_HZ): 100 on every Linux ABI. */
export const USER_HZ = 100;

/** One pid + start time: names one process for good. `TargetRoot` is one. */
export interface ProcessRef {
  pid: number;
  /** Clock ticks since boot when it started (/proc/PID/stat field 22). */
  startTime: number;
}

/** /proc/PID/stat. */
export interface ProcStat extends ProcessRef {
  /** The thread name of the main thread (15 bytes at most; may hold spaces and parentheses). */
  comm: string;
  /** R running, S sleeping, D disk sleep, Z zombie, T stopped, t traced, X dead, I idle. */
  state: string;
  ppid: number;
  /** Page faults of the process (minor: no I/O; major: read from disk), and of waited-for children. */
  minflt: number;
  cminflt: number;
  majflt: number;
  cmajflt: number;
  /** Ticks (USER_HZ) of the process itself, all its threads, live and dead. */
  utime: number;
  stime: number;
  /** Ticks of the children it waited for (and of theirs, recursively). */
  cutime: number;
  cstime: number;
  threads: number;
}

/**
 * Reads a /proc file into one reused buffer (twice as fast as readFileSync, which sizes a new
 * buffer with fstat, useless on /proc where sizes are 0). undefined when it cannot be read.
 */
let buffer = Buffer.allocUnsafe(1 << 16);
export function readProcFile(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        const bigger = Buffer.allocUnsafe(buffer.length * 2);
        buffer.copy(bigger, 0, 0, length);
        buffer = bigger;
      }
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
    }
    return buffer.toString('utf8', 0, length);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Parses the text of /proc/PID/stat. The comm is between the first `(` and the LAST `)`, since a
 * comm may itself hold parentheses and spaces. undefined for a truncated or garbled line.
 */
export function parseStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const f = text
    .slice(close + 2)
    .trim()
    .split(' ');
  if (f.length < 20) return undefined;
  const n = (i: number): number => Number(f[i]);
  const stat: ProcStat = {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: f[0]!,
    // Fields 4 on, counted from 1 as in proc(5): f[i] is field i + 3.
    ppid: n(1),
    minflt: n(7),
    cminflt: n(8),
    majflt: n(9),
    cmajflt: n(10),
    utime: n(11),
    stime: n(12),
    cutime: n(13),
    cstime: n(14),
    threads: n(17),
    startTime: n(19),
  };
  return Number.isSafeInteger(stat.pid) &&
    Number.isFinite(stat.startTime) &&
    Number.isFinite(stat.ppid)
    ? stat
    : undefined;
}

/** /proc/PID/stat of a process (`self`: this one); undefined when it is gone. */
export function readStat(pid: number | 'self'): ProcStat | undefined {
  const text = readProcFile(`/proc/${pid}/stat`);
  return text === undefined ? undefined : parseStat(text);
}

/** True when `pid` is alive and, if `startTime` is given, is still the same process (not a recycled pid). */
export function isSameProcess(pid: number, startTime: number | null | undefined): boolean {
  const st = readStat(pid);
  if (!st || st.state === 'Z') return false;
  return startTime === null || startTime === undefined || st.startTime === startTime;
}

/** The pids of /proc now (processes, not threads). */
export function listPids(): number[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const name of names) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) out.push(Number(name));
  }
  return out;
}

/** Every process of /proc, pid → stat, in one pass. Processes that exit meanwhile are left out. */
export function scanProcesses(): Map<number, ProcStat> {
  const out = new Map<number, ProcStat>();
  for (const pid of listPids()) {
    const st = readStat(pid);
    if (st) out.set(pid, st);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Process trees

/**
 * The parent of `st` in a snapshot, when it is still the process that forked it (or adopted it):
 * undefined for pid 0, a parent not in the snapshot, or a younger process that took a pid
 * recycled while the snapshot was read.
 */
export function parentOf(st: ProcStat, procs: ReadonlyMap<number, ProcStat>): ProcStat | undefined {
  if (st.ppid <= 0 || st.ppid === st.pid) return undefined;
  const parent = procs.get(st.ppid);
  return parent && parent.startTime <= st.startTime ? parent : undefined;
}

/** The root itself when it is alive in the snapshot (and, given a start time, the same process). */
export function findRoot(
  root: number | ProcessRef,
  procs: ReadonlyMap<number, ProcStat>,
): ProcStat | undefined {
  const pid = typeof root === 'number' ? root : root.pid;
  const st = procs.get(pid);
  if (!st) return undefined;
  return typeof root === 'number' || st.startTime === root.startTime ? st : undefined;
}

/**
 * The roots and every descendant of them in a snapshot (by default /proc now), roots first,
 * each process once. A root given with its start time (a `TargetRoot`) is left out once its pid
 * belongs to another process; zombies are in (they are still the tree's until reaped).
 */
export function processTree(
  roots: readonly (number | ProcessRef)[],
  procs: ReadonlyMap<number, ProcStat> = scanProcesses(),
): ProcStat[] {
  const children = new Map<number, ProcStat[]>();
  for (const st of procs.values()) {
    const parent = parentOf(st, procs);
    if (!parent) continue;
    const list = children.get(parent.pid);
    if (list) list.push(st);
    else children.set(parent.pid, [st]);
  }
  const out: ProcStat[] = [];
  const seen = new Set<number>();
  const queue: ProcStat[] = [];
  for (const r of roots) {
    const st = findRoot(r, procs);
    if (st) queue.push(st);
  }
  for (let i = 0; i < queue.length; i++) {
    const st = queue[i]!;
    if (seen.has(st.pid)) continue;
    seen.add(st.pid);
    out.push(st);
    for (const c of children.get(st.pid) ?? []) queue.push(c);
  }
  return out;
}

/** The ancestors of a process in a snapshot, its parent first, up to (and with) init. */
export function ancestors(
  pid: number,
  procs: ReadonlyMap<number, ProcStat> = scanProcesses(),
): ProcStat[] {
  const out: ProcStat[] = [];
  let st = procs.get(pid);
  // A ppid loop cannot happen in one kernel, but a snapshot read over time is not one instant.
  for (let depth = 0; st && depth < 4096; depth++) {
    st = parentOf(st, procs);
    if (st) out.push(st);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Other files of a process

/** Selected fields of /proc/PID/status or /proc/PID/task/TID/status. */
export interface ProcStatus {
  /** Resident set in bytes (absent for zombies and kernel threads: 0). */
  rss: number;
  voluntary: number;
  involuntary: number;
}

export function parseStatus(text: string): ProcStatus {
  const field = (name: string): number => {
    const at = text.indexOf(`\n${name}:`);
    if (at < 0) return 0;
    return Number(
      /^\s*(\d+)/.exec(text.slice(at + name.length + 2, at + name.length + 40))?.[1] ?? 0,
    );
  };
  return {
    rss: field('VmRSS') * 1024,
    voluntary: field('voluntary_ctxt_switches'),
    involuntary: field('nonvoluntary_ctxt_switches'),
  };
}

/** /proc/PID/status, or a thread's (`tid`); undefined when gone. */
export function readStatus(pid: number | 'self', tid?: number): ProcStatus | undefined {
  const text = readProcFile(
    tid === undefined ? `/proc/${pid}/status` : `/proc/${pid}/task/${tid}/status`,
  );
  return text === undefined ? undefined : parseStatus(text);
}

/** /proc/PID/io: includes the process's dead threads and the children it waited for. */
export interface ProcIo {
  rchar: number;
  wchar: number;
  syscr: number;
  syscw: number;
  readBytes: number;
  writeBytes: number;
}

export function parseIo(text: string): ProcIo {
  const out: ProcIo = { rchar: 0, wchar: 0, syscr: 0, syscw: 0, readBytes: 0, writeBytes: 0 };
  for (const line of text.split('\n')) {
    const [k, v] = line.split(': ');
    const n = Number(v);
    if (!Number.isFinite(n)) continue;
    if (k === 'rchar') out.rchar = n;
    else if (k === 'wchar') out.wchar = n;
    else if (k === 'syscr') out.syscr = n;
    else if (k === 'syscw') out.syscw = n;
    else if (k === 'read_bytes') out.readBytes = n;
    else if (k === 'write_bytes') out.writeBytes = n;
  }
  return out;
}

/** /proc/PID/io; undefined when gone or not readable (another user's process without root). */
export function readIo(pid: number | 'self'): ProcIo | undefined {
  const text = readProcFile(`/proc/${pid}/io`);
  return text === undefined ? undefined : parseIo(text);
}

/** The command line (argv); empty for kernel threads, zombies and processes gone. */
export function readCmdline(pid: number | 'self'): string[] {
  const raw = readProcFile(`/proc/${pid}/cmdline`);
  if (raw === undefined) return [];
  return raw.split('\0').filter((s, i, a) => s !== '' || i < a.length - 1);
}

/** The executable's path (` (deleted)` kept: it says the file was replaced); undefined when unreadable. */
export function readExe(pid: number | 'self'): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

export function readCgroup(pid: number | 'self'): string {
  return readProcFile(`/proc/${pid}/cgroup`) ?? '';
}

/** Clock ticks since boot now, on the scale of `startTime`. */
export function ticksSinceBoot(): number {
  const uptime = Number((readProcFile('/proc/uptime') ?? '').split(' ')[0]);
  return Math.floor(uptime * USER_HZ);
}
