/**
 * Fallback worker when eBPF is not usable: samples /proc/PID/io of the target's processes (or
 * of every process) and prints the increases since the previous sample, one line per process:
 *   io PID RCHAR WCHAR SYSCR SYSCW READ_BYTES WRITE_BYTES COMM
 * Usage: node proc-io-sampler.js INTERVAL_MS [PID...]   (no PID: every process)
 */
import { descendants, listPids, readIo, readStat, type ProcIo } from './procfs.js';

const FIELDS = ['rchar', 'wchar', 'syscr', 'syscw', 'read_bytes', 'write_bytes'] as const;

const intervalMs = Number(process.argv[2]);
const roots = process.argv.slice(3).map(Number);
if (
  !Number.isFinite(intervalMs) ||
  intervalMs <= 0 ||
  roots.some((p) => !Number.isSafeInteger(p) || p <= 0)
) {
  process.stderr.write('usage: proc-io-sampler INTERVAL_MS [PID...]\n');
  process.exit(2);
}

const last = new Map<number, { io: ProcIo; comm: string }>();

function current(): { pid: number; comm: string }[] {
  if (roots.length > 0) return descendants(roots);
  return listPids()
    .filter((pid) => pid !== process.pid)
    .map((pid) => ({ pid, comm: readStat(pid)?.comm ?? '?' }));
}

/** Takes a sample; when `baseline`, records levels without printing (I/O before the start). */
function sample(baseline: boolean): void {
  const lines: string[] = [];
  for (const { pid, comm } of current()) {
    const io = readIo(pid);
    if (!io) continue;
    const before = last.get(pid);
    last.set(pid, { io, comm });
    // A process born after the start did all its I/O under observation: count from 0.
    if (baseline) continue;
    const from = before?.io;
    const inc = FIELDS.map((f) => Math.max(0, io[f] - (from?.[f] ?? 0)));
    if (inc.some((v) => v > 0))
      lines.push(`io ${pid} ${inc.join(' ')} ${comm.replace(/\n/g, ' ')}`);
  }
  if (lines.length > 0) process.stdout.write(lines.join('\n') + '\n');
}

sample(true);
process.stdout.write('ready\n');
const timer = setInterval(() => sample(false), intervalMs);
const finish = (): void => {
  clearInterval(timer);
  sample(false);
  process.exit(0);
};
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
