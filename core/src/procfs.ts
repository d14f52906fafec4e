import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  /** Clock ticks since boot when the process started (field 22): with the pid, it names one process. */
  startTime: number;
}

/** Parses /proc/PID/stat; undefined when the process is gone. */
export function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // comm may contain spaces and parentheses: it ends at the last ')'.
  const close = text.lastIndexOf(')');
  const fields = text.slice(close + 2).split(' ');
  return {
    pid,
    comm: text.slice(text.indexOf('(') + 1, close),
    state: fields[0] ?? '?',
    ppid: Number(fields[1]),
    startTime: Number(fields[19]),
  };
}

/** True when `pid` is alive and, if `startTime` is given, is still the same process (not a recycled pid). */
export function isSameProcess(pid: number, startTime: number | null | undefined): boolean {
  const st = readStat(pid);
  if (!st || st.state === 'Z') return false;
  return startTime === null || startTime === undefined || st.startTime === startTime;
}

export function listPids(): number[] {
  return readdirSync('/proc')
    .filter((e) => e.charCodeAt(0) >= 48 && e.charCodeAt(0) <= 57)
    .map(Number);
}

export function readCmdline(pid: number): string[] {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((s, i, a) => s !== '' || i < a.length - 1);
  } catch {
    return [];
  }
}

export function readCgroup(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return '';
  }
}
