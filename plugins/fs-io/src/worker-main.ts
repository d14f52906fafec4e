/**
 * Fallback worker when eBPF is not usable: samples /proc/PID/io of the target's processes (or
 * of every process) and prints the increases since the previous sample, one line per process:
 *   io PID RCHAR WCHAR SYSCR SYSCW READ_BYTES WRITE_BYTES COMM
 * Usage: node worker-main.js INTERVAL_MS [PID[:START]...]   (no PID: every process)
 * A PID given with its start time is that process only, not one that got its pid since; a
 * process is tracked by pid and start time, so a recycled pid starts from nothing.
 */
import {
  processTree,
  readIo,
  readStat,
  scanProcesses,
  type ProcIo,
  type ProcessRef,
  type ProcStat,
} from '@scalpels/core/procfs';
import { announceReady } from '@scalpels/core/api';

const FIELDS = ['rchar', 'wchar', 'syscr', 'syscw', 'read_bytes', 'write_bytes'] as const;
type Counts = Record<(typeof FIELDS)[number], number>;
const zero = (): Counts => ({
  rchar: 0,
  wchar: 0,
  syscr: 0,
  syscw: 0,
  read_bytes: 0,
  write_bytes: 0,
});
/** The sampler's output fields from the core's reading of /proc/PID/io. */
const counts = (io: ProcIo): Counts => ({
  rchar: io.rchar,
  wchar: io.wchar,
  syscr: io.syscr,
  syscw: io.syscw,
  read_bytes: io.readBytes,
  write_bytes: io.writeBytes,
});

const intervalMs = Number(process.argv[2]);
const roots = process.argv.slice(3).map((arg): number | ProcessRef => {
  const m = /^(\d+)(?::(\d+))?$/.exec(arg);
  if (!m) return NaN;
  return m[2] === undefined ? Number(m[1]) : { pid: Number(m[1]), startTime: Number(m[2]) };
});
if (
  !Number.isFinite(intervalMs) ||
  intervalMs <= 0 ||
  roots.some((r) => {
    const p = typeof r === 'number' ? r : r.pid;
    return !Number.isSafeInteger(p) || p <= 0;
  })
) {
  process.stderr.write('usage: worker-main.js INTERVAL_MS [PID[:START]...]\n');
  process.exit(2);
}

interface Tracked {
  io: Counts;
  ppid: number;
  startTime: number;
  /**
   * How much of this process's counters has been printed already: as its own increases, or
   * for a descendant whose I/O the kernel folded into these counters when it was reaped.
   */
  covered: Counts;
}
const tracked = new Map<number, Tracked>();
/**
 * When a parent reaps a child, the kernel adds the child's whole I/O (its own and that of the
 * children it reaped) to the parent's counters. What was already printed of it is taken off the
 * parent's next increases, so that it is counted once (the child's last, unsampled interval
 * goes to the parent).
 */
const owed = new Map<number, Counts>();

function current(): ProcStat[] {
  const procs = scanProcesses();
  if (roots.length > 0) return processTree(roots, procs);
  procs.delete(process.pid);
  return [...procs.values()];
}

/** A tracked process is gone (reaped): what was counted of it is owed by its parent. */
function fold(pid: number, t: Tracked): void {
  tracked.delete(pid);
  const pending = owed.get(pid);
  owed.delete(pid);
  // Its parent, unless that pid is now a younger process (the core's rule for pid reuse).
  const parent = tracked.get(t.ppid);
  if (!parent || parent.startTime > t.startTime) return;
  const o = owed.get(t.ppid) ?? zero();
  for (const f of FIELDS) o[f] += t.covered[f] + (pending?.[f] ?? 0);
  owed.set(t.ppid, o);
}

/** Takes a sample; when `baseline`, records levels without printing (I/O before the start). */
function sample(baseline: boolean): void {
  const procs = current();
  const alive = new Map(procs.map((p) => [p.pid, p.startTime]));
  // Gone, or its pid now another process's: either way it was reaped.
  for (const [pid, t] of tracked) if (alive.get(pid) !== t.startTime) fold(pid, t);
  const children = new Map<number, number[]>();
  for (const [pid, t] of tracked) children.set(t.ppid, [...(children.get(t.ppid) ?? []), pid]);
  const lines: string[] = [];
  for (const { pid, ppid, comm, startTime } of procs) {
    const read = readIo(pid);
    if (!read) continue;
    const io = counts(read);
    // A child reaped since the listing above may already be in these counters: settle it now,
    // before the parent's increase is printed.
    for (const child of children.get(pid) ?? []) {
      const c = tracked.get(child);
      if (c && child !== pid && readStat(child)?.startTime !== c.startTime) fold(child, c);
    }
    const before = tracked.get(pid);
    const t: Tracked = { io, ppid, startTime, covered: before?.covered ?? zero() };
    tracked.set(pid, t);
    // A process born after the start did all its I/O under observation: count from 0.
    if (baseline) continue;
    const o = owed.get(pid);
    const inc = FIELDS.map((f) => {
      const v = Math.max(0, io[f] - (before?.io[f] ?? 0));
      const taken = o ? Math.min(o[f], v) : 0;
      if (o) o[f] -= taken;
      t.covered[f] += v;
      return v - taken;
    });
    if (inc.some((v) => v > 0))
      lines.push(`io ${pid} ${inc.join(' ')} ${comm.replace(/\n/g, ' ')}`);
  }
  if (lines.length > 0) process.stdout.write(lines.join('\n') + '\n');
}

sample(true);
announceReady();
const timer = setInterval(() => sample(false), intervalMs);
const finish = (): void => {
  clearInterval(timer);
  sample(false);
  process.exit(0);
};
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
