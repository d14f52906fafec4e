import type { Schema, SeriesSpec } from '@scalpels/core';

const counter = (unit: string, description: string, labels?: readonly string[]): SeriesSpec => ({
  kind: 'counter',
  unit,
  description,
  labels,
});
const gauge = (unit: string, description: string, labels?: readonly string[]): SeriesSpec => ({
  kind: 'gauge',
  unit,
  description,
  labels,
});

const DISK = ['device'] as const;
const NET = ['interface'] as const;
/** Per target tree: the root pid and the root's command name (comm). */
const TREE = ['pid', 'comm'] as const;

/**
 * Series of the proc plugin, named after Performance Co-Pilot's metric namespace. Counters are
 * increases since the previous sample (sum = total over the task, sum/duration = rate).
 */
export const schema: Schema = {
  series: {
    'kernel.cpu.time': counter(
      'ms',
      'CPU time of all CPUs by mode (/proc/stat cpu line; guest time is inside user and nice)',
      ['mode'],
    ),
    'kernel.context_switches': counter('count', 'Context switches of all CPUs (/proc/stat ctxt)'),
    'kernel.forks': counter('count', 'Processes and threads created (/proc/stat processes)'),
    'kernel.interrupts': counter('count', 'Interrupts serviced (/proc/stat intr)'),
    'kernel.procs.running': gauge('count', 'Runnable threads (/proc/stat procs_running)'),
    'kernel.procs.blocked': gauge('count', 'Threads blocked on I/O (/proc/stat procs_blocked)'),
    'kernel.load': gauge('count', 'Load average over 1, 5 and 15 minutes (/proc/loadavg)', [
      'minutes',
    ]),
    'mem.total': gauge('bytes', 'Usable RAM (MemTotal)'),
    'mem.free': gauge('bytes', 'Unused RAM (MemFree)'),
    'mem.available': gauge('bytes', 'RAM available without swapping (MemAvailable)'),
    'mem.used': gauge('bytes', 'RAM in use that cannot be reclaimed: MemTotal - MemAvailable'),
    'mem.buffers': gauge('bytes', 'Block device buffers (Buffers)'),
    'mem.cached': gauge('bytes', 'Page cache (Cached)'),
    'mem.shared': gauge('bytes', 'Shared memory and tmpfs (Shmem)'),
    'mem.slab': gauge('bytes', 'Kernel slab caches (Slab)'),
    'mem.dirty': gauge('bytes', 'Dirty pages waiting to be written (Dirty)'),
    'mem.swap.total': gauge('bytes', 'Swap space (SwapTotal)'),
    'mem.swap.free': gauge('bytes', 'Unused swap space (SwapFree)'),
    'mem.faults.minor': counter(
      'count',
      'Page faults served without I/O (/proc/vmstat pgfault - pgmajfault)',
    ),
    'mem.faults.major': counter(
      'count',
      'Page faults that read from disk (/proc/vmstat pgmajfault)',
    ),
    'mem.swap.in': counter('pages', 'Pages swapped in (/proc/vmstat pswpin)'),
    'mem.swap.out': counter('pages', 'Pages swapped out (/proc/vmstat pswpout)'),
    'disk.read.ops': counter('count', 'Reads completed (/proc/diskstats)', DISK),
    'disk.read.bytes': counter('bytes', 'Bytes read (sectors of 512 bytes)', DISK),
    'disk.read.time': counter(
      'ms',
      'Time spent by all reads (summed over concurrent requests)',
      DISK,
    ),
    'disk.write.ops': counter('count', 'Writes completed (/proc/diskstats)', DISK),
    'disk.write.bytes': counter('bytes', 'Bytes written (sectors of 512 bytes)', DISK),
    'disk.write.time': counter(
      'ms',
      'Time spent by all writes (summed over concurrent requests)',
      DISK,
    ),
    'disk.io.time': counter(
      'ms',
      'Time the device had I/O in flight (rate / 1000 = utilization)',
      DISK,
    ),
    'disk.inflight': gauge('count', 'Requests in flight at the sample', DISK),
    'network.rx.bytes': counter('bytes', 'Bytes received (/proc/net/dev)', NET),
    'network.rx.packets': counter('count', 'Packets received', NET),
    'network.rx.errors': counter('count', 'Receive errors', NET),
    'network.rx.drops': counter('count', 'Received packets dropped', NET),
    'network.tx.bytes': counter('bytes', 'Bytes sent (/proc/net/dev)', NET),
    'network.tx.packets': counter('count', 'Packets sent', NET),
    'network.tx.errors': counter('count', 'Transmit errors', NET),
    'network.tx.drops': counter('count', 'Sent packets dropped', NET),
    'proc.cpu.user': counter(
      'ms',
      'User CPU time of the target tree, exited children included (utime+cutime, USER_HZ 100)',
      TREE,
    ),
    'proc.cpu.system': counter(
      'ms',
      'System CPU time of the target tree, exited children included (stime+cstime, USER_HZ 100)',
      TREE,
    ),
    'proc.io.read_bytes': counter(
      'bytes',
      'Bytes the tree caused to be read from storage (/proc/PID/io)',
      TREE,
    ),
    'proc.io.write_bytes': counter(
      'bytes',
      'Bytes the tree caused to be written to storage (/proc/PID/io)',
      TREE,
    ),
    'proc.io.rchar': counter(
      'bytes',
      'Bytes passed to read-like system calls, cache hits included',
      TREE,
    ),
    'proc.io.wchar': counter('bytes', 'Bytes passed to write-like system calls', TREE),
    'proc.faults.minor': counter(
      'count',
      'Page faults of the tree served without I/O, exited children included',
      TREE,
    ),
    'proc.faults.major': counter(
      'count',
      'Page faults of the tree that read from disk, exited children included',
      TREE,
    ),
    'proc.ctxsw.voluntary': counter(
      'count',
      'Voluntary context switches of all threads of the tree',
      TREE,
    ),
    'proc.ctxsw.involuntary': counter(
      'count',
      'Involuntary context switches of all threads of the tree',
      TREE,
    ),
    'proc.rss': gauge(
      'bytes',
      'Resident memory of the tree (sum of VmRSS; shared pages counted per process)',
      TREE,
    ),
    'proc.threads': gauge('count', 'Threads of the tree', TREE),
    'proc.fds': gauge('count', 'Open file descriptors of the tree', TREE),
    'proc.count': gauge('count', 'Live (non-zombie) processes of the tree', TREE),
  },
};
