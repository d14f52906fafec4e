import type { Schema } from '@scalpels/core';

const FILE_LABELS = ['pid', 'comm', 'path'] as const;
const PROC_LABELS = ['pid', 'comm'] as const;

/** Series and events of fs-io. Counters carry the increase since the previous point. */
export const schema: Schema = {
  series: {
    'fs.read.ops': {
      kind: 'counter',
      unit: 'count',
      description: 'read/pread64/readv/preadv/preadv2 calls that succeeded, per process and file',
      labels: FILE_LABELS,
    },
    'fs.read.bytes': {
      kind: 'counter',
      unit: 'bytes',
      description: 'bytes returned by those reads, per process and file',
      labels: FILE_LABELS,
    },
    'fs.write.ops': {
      kind: 'counter',
      unit: 'count',
      description:
        'write/pwrite64/writev/pwritev/pwritev2 calls that succeeded, per process and file',
      labels: FILE_LABELS,
    },
    'fs.write.bytes': {
      kind: 'counter',
      unit: 'bytes',
      description: 'bytes accepted by those writes, per process and file',
      labels: FILE_LABELS,
    },
    'fs.open.ops': {
      kind: 'counter',
      unit: 'count',
      description: 'successful open/openat/openat2/creat calls, per process and path as given',
      labels: FILE_LABELS,
    },
    'fs.open.errors': {
      kind: 'counter',
      unit: 'count',
      description: 'failed opens, per process, path and errno name (ENOENT, EACCES, ...)',
      labels: [...FILE_LABELS, 'errno'],
    },
    'fs.fsync.ops': {
      kind: 'counter',
      unit: 'count',
      description: 'fsync and fdatasync calls (label call), per process and file',
      labels: [...FILE_LABELS, 'call'],
    },
    'fs.read.time': {
      kind: 'counter',
      unit: 'ms',
      description: 'time spent inside those reads (latency=true), per process and file',
      labels: FILE_LABELS,
    },
    'fs.write.time': {
      kind: 'counter',
      unit: 'ms',
      description: 'time spent inside those writes (latency=true), per process and file',
      labels: FILE_LABELS,
    },
    'fs.read.latency': {
      kind: 'histogram',
      unit: 'count',
      description:
        'reads per log2 latency bucket (latency=true); le is the exclusive upper bound in nanoseconds',
      labels: [...FILE_LABELS, 'le'],
    },
    'fs.write.latency': {
      kind: 'histogram',
      unit: 'count',
      description:
        'writes per log2 latency bucket (latency=true); le is the exclusive upper bound in nanoseconds',
      labels: [...FILE_LABELS, 'le'],
    },
    'vfs.reads': {
      kind: 'counter',
      unit: 'count',
      description: 'read-family calls, whole node (like vfsstat)',
    },
    'vfs.writes': { kind: 'counter', unit: 'count', description: 'write-family calls, whole node' },
    'vfs.opens': {
      kind: 'counter',
      unit: 'count',
      description: 'open/openat/openat2/creat calls, whole node',
    },
    'vfs.creates': {
      kind: 'counter',
      unit: 'count',
      description: 'open/openat calls with O_CREAT plus creat calls, whole node',
    },
    'vfs.unlinks': {
      kind: 'counter',
      unit: 'count',
      description: 'unlink/unlinkat calls, whole node',
    },
    'vfs.fsyncs': {
      kind: 'counter',
      unit: 'count',
      description: 'fsync/fdatasync calls, whole node',
    },
    'proc.io.rchar': {
      kind: 'counter',
      unit: 'bytes',
      description: 'bytes read by any read-like call, from /proc/PID/io (technique proc-io)',
      labels: PROC_LABELS,
    },
    'proc.io.wchar': {
      kind: 'counter',
      unit: 'bytes',
      description: 'bytes written by any write-like call, from /proc/PID/io (technique proc-io)',
      labels: PROC_LABELS,
    },
    'proc.io.syscr': {
      kind: 'counter',
      unit: 'count',
      description: 'read-like system calls, from /proc/PID/io (technique proc-io)',
      labels: PROC_LABELS,
    },
    'proc.io.syscw': {
      kind: 'counter',
      unit: 'count',
      description: 'write-like system calls, from /proc/PID/io (technique proc-io)',
      labels: PROC_LABELS,
    },
    'proc.io.read_bytes': {
      kind: 'counter',
      unit: 'bytes',
      description:
        'bytes fetched from storage (page cache misses), from /proc/PID/io (technique proc-io)',
      labels: PROC_LABELS,
    },
    'proc.io.write_bytes': {
      kind: 'counter',
      unit: 'bytes',
      description: 'bytes sent to storage (dirtied pages), from /proc/PID/io (technique proc-io)',
      labels: PROC_LABELS,
    },
  },
  events: {
    'fs.file': {
      description:
        'activity on one file by one process during one flush interval; the value is the bytes read plus written, ' +
        'so top files by total value are the hottest by bytes',
      key: 'file path (as opened; relative paths are relative to the process working directory)',
      valueUnit: 'bytes',
      fields: {
        pid: 'process id',
        comm: 'process name',
        ops: 'reads + writes + opens + fsyncs in the interval',
        readOps: 'reads',
        readBytes: 'bytes read',
        writeOps: 'writes',
        writeBytes: 'bytes written',
        opens: 'successful opens',
        openErrors: 'failed opens',
        fsyncs: 'fsync + fdatasync calls',
      },
    },
  },
};
