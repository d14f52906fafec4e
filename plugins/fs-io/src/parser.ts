import { diagnostic, WORKER_READY_LINE } from '@scalpels/core';
import type {
  DroppedNotice,
  ParseContext,
  ParseResult,
  Parser,
  Sample,
  TraceEvent,
  TraceRecord,
} from '@scalpels/core';
import { errnoName } from './errno.js';
import type { Options } from './options.js';

/**
 * Parser of the bpftrace program's output. The program prints cumulative maps at every flush
 * (`@@flush`) and at the end (`@@end`); this parser keeps the previous values and emits the
 * increases as counter samples plus one `fs.file` event per process and file with activity.
 */

type FileMetric =
  | 'readOps'
  | 'readBytes'
  | 'writeOps'
  | 'writeBytes'
  | 'opens'
  | 'fsyncs'
  | 'fdatasyncs'
  | 'readNs'
  | 'writeNs';

const FILE_MAPS: Readonly<Record<string, FileMetric>> = {
  open_n: 'opens',
  read_n: 'readOps',
  read_b: 'readBytes',
  write_n: 'writeOps',
  write_b: 'writeBytes',
  fsync_n: 'fsyncs',
  fdatasync_n: 'fdatasyncs',
  read_ns: 'readNs',
  write_ns: 'writeNs',
};
const FD_MAPS: Readonly<Record<string, FileMetric>> = {
  read_fd_n: 'readOps',
  read_fd_b: 'readBytes',
  write_fd_n: 'writeOps',
  write_fd_b: 'writeBytes',
};
const VFS_SERIES: Readonly<Record<string, string>> = {
  vfs_reads: 'vfs.reads',
  vfs_writes: 'vfs.writes',
  vfs_opens: 'vfs.opens',
  vfs_creates: 'vfs.creates',
  vfs_unlinks: 'vfs.unlinks',
  vfs_fsyncs: 'vfs.fsyncs',
};
const SAMPLE_OF: Readonly<Record<FileMetric, string | undefined>> = {
  readOps: 'fs.read.ops',
  readBytes: 'fs.read.bytes',
  writeOps: 'fs.write.ops',
  writeBytes: 'fs.write.bytes',
  opens: 'fs.open.ops',
  fsyncs: undefined,
  fdatasyncs: undefined,
  readNs: undefined,
  writeNs: undefined,
};

/** Path label for a file the program could not name. */
export const UNKNOWN_FILE = '(unknown)';
export const fdLabel = (fd: number): string => `(fd ${fd})`;

type FileDelta = Partial<Record<FileMetric, number>> & {
  openErrors?: Map<string, number>;
  readHist?: Map<number, number>;
  writeHist?: Map<number, number>;
};

const RE_FILE = /^@(\w+)\[(\d+), (\d+)\]: (\d+)$/;
const RE_OPEN_ERR = /^@open_e\[(\d+), (\d+), (\d+)\]: (\d+)$/;
const RE_HIST_HEAD = /^@(read_h|write_h)\[(\d+), (\d+)\]:\s*$/;
const RE_BUCKET =
  /^(?:\[(-?[\d.]+[KMGTPE]?), (-?[\d.]+[KMGTPE]?)\)|\(\.\.\., (-?[\d.]+[KMGTPE]?)\)|\[(-?\d+)\])\s+(\d+)\s*\|/;
const RE_COMM = /^@comm\[(\d+)\]: (.*)$/;
const RE_NAME = /^@names\[(\d+)\]: (.*)$/;
const RE_VFS = /^@(vfs_\w+): (\d+)$/;
const RE_LOST = /^Lost (\d+) events$/;
const RE_REGS_MISS = /^@regs_miss: (\d+)$/;

const SUFFIX: Readonly<Record<string, number>> = {
  K: 2 ** 10,
  M: 2 ** 20,
  G: 2 ** 30,
  T: 2 ** 40,
  P: 2 ** 50,
  E: 2 ** 60,
};

/** `16K` → 16384: bpftrace writes histogram bounds with binary suffixes. */
export function parseBound(text: string): number {
  const m = /^(-?[\d.]+)([KMGTPE]?)$/.exec(text);
  if (!m) return NaN;
  return Number(m[1]) * (m[2] ? SUFFIX[m[2]]! : 1);
}

export function createBpftraceParser(_ctx: ParseContext<Options>): Parser {
  const comms = new Map<number, string>();
  const names = new Map<string, string>();
  /** Last cumulative value per map key, to turn the printed totals into increases. */
  const previous = new Map<string, number>();
  /** Increases since the last flush, per pid and file (id, or `fd:N` for untracked fds). */
  let pending = new Map<string, { pid: number; file: string; d: FileDelta }>();
  let vfsPending = new Map<string, number>();
  let hist: { map: 'read_h' | 'write_h'; pid: number; id: string } | undefined;
  /** After `@@end` bpftrace dumps the maps END cleared (scalars as 0): nothing more to take. */
  let ended = false;

  const increase = (key: string, total: number): number => {
    const before = previous.get(key) ?? 0;
    previous.set(key, total);
    // Totals only grow; a smaller one means bpftrace lost the key (map full), so count from 0.
    return total >= before ? total - before : total;
  };
  const entry = (pid: number, file: string): FileDelta => {
    const k = `${pid}\t${file}`;
    let e = pending.get(k);
    if (!e) pending.set(k, (e = { pid, file, d: {} }));
    return e.d;
  };

  const fileLabel = (file: string): string => {
    if (file.startsWith('fd:')) return fdLabel(Number(file.slice(3)));
    if (file === '0' || file === '1') return UNKNOWN_FILE;
    return names.get(file) ?? `(file #${file})`;
  };

  const flush = (): TraceRecord[] => {
    const out: TraceRecord[] = [];
    for (const [name, delta] of vfsPending)
      if (delta > 0) out.push({ kind: 'sample', series: name, value: delta });
    // Several ids can name one path (a path first opened on two CPUs at once, or seeded): merge by path.
    const byPath = new Map<string, { pid: number; path: string; d: FileDelta }>();
    for (const { pid, file, d } of pending.values()) {
      const path = fileLabel(file);
      const k = `${pid}\t${path}`;
      const into = byPath.get(k);
      if (!into) {
        byPath.set(k, { pid, path, d });
        continue;
      }
      mergeDelta(into.d, d);
    }
    for (const { pid, path, d } of byPath.values()) {
      const labels = { pid: String(pid), comm: comms.get(pid) ?? '?', path };
      for (const metric of Object.keys(SAMPLE_OF) as FileMetric[]) {
        const series = SAMPLE_OF[metric];
        const v = d[metric] ?? 0;
        if (series && v > 0) out.push({ kind: 'sample', series, labels, value: v });
      }
      if (d.fsyncs)
        out.push({
          kind: 'sample',
          series: 'fs.fsync.ops',
          labels: { ...labels, call: 'fsync' },
          value: d.fsyncs,
        });
      if (d.fdatasyncs)
        out.push({
          kind: 'sample',
          series: 'fs.fsync.ops',
          labels: { ...labels, call: 'fdatasync' },
          value: d.fdatasyncs,
        });
      let openErrors = 0;
      for (const [errno, v] of d.openErrors ?? []) {
        openErrors += v;
        out.push({
          kind: 'sample',
          series: 'fs.open.errors',
          labels: { ...labels, errno },
          value: v,
        });
      }
      if (d.readNs)
        out.push({ kind: 'sample', series: 'fs.read.time', labels, value: d.readNs / 1e6 });
      if (d.writeNs)
        out.push({ kind: 'sample', series: 'fs.write.time', labels, value: d.writeNs / 1e6 });
      for (const [series, h] of [
        ['fs.read.latency', d.readHist],
        ['fs.write.latency', d.writeHist],
      ] as const)
        for (const [le, v] of [...(h ?? [])].sort((a, b) => a[0] - b[0]))
          if (v > 0)
            out.push({ kind: 'sample', series, labels: { ...labels, le: String(le) }, value: v });

      // Descriptors the program could not name (pipes, sockets, inherited from outside the
      // target) stay in the series but are not files to rank.
      if (path.startsWith('(fd ') || path === UNKNOWN_FILE) continue;
      const readOps = d.readOps ?? 0;
      const writeOps = d.writeOps ?? 0;
      const opens = d.opens ?? 0;
      const fsyncs = (d.fsyncs ?? 0) + (d.fdatasyncs ?? 0);
      const ops = readOps + writeOps + opens + fsyncs + openErrors;
      if (ops === 0) continue;
      const readBytes = d.readBytes ?? 0;
      const writeBytes = d.writeBytes ?? 0;
      const event: TraceEvent = {
        kind: 'event',
        type: 'fs.file',
        key: path,
        value: readBytes + writeBytes,
        data: {
          pid,
          comm: labels.comm,
          ops,
          readOps,
          readBytes,
          writeOps,
          writeBytes,
          opens,
          openErrors,
          fsyncs,
        },
      };
      if (d.readNs !== undefined || d.writeNs !== undefined)
        event.durationMs = ((d.readNs ?? 0) + (d.writeNs ?? 0)) / 1e6;
      out.push(event);
    }
    pending = new Map();
    vfsPending = new Map();
    return out;
  };

  return {
    line(text: string): ParseResult | DroppedNotice {
      if (ended) return;
      if (hist) {
        const b = RE_BUCKET.exec(text);
        if (b) {
          // Bucket [lo, hi): le = hi. `[N]` holds exactly N (so le = N + 1); `(..., 0)` negatives.
          const le =
            b[2] !== undefined
              ? parseBound(b[2])
              : b[3] !== undefined
                ? parseBound(b[3])
                : Number(b[4]) + 1;
          const count = Number(b[5]);
          if (!Number.isFinite(le)) return diagnostic(`bad histogram bucket: ${text}`);
          const inc = increase(`${hist.map}\t${hist.pid}\t${hist.id}\t${le}`, count);
          if (inc > 0) {
            const d = entry(hist.pid, hist.id);
            const m =
              hist.map === 'read_h' ? (d.readHist ??= new Map()) : (d.writeHist ??= new Map());
            m.set(le, (m.get(le) ?? 0) + inc);
          }
          return;
        }
        hist = undefined;
      }
      if (text === '' || text.startsWith('Attaching ') || text === '@@ready') return;
      if (text === '@@flush') return flush();
      if (text === '@@end') {
        ended = true;
        return flush();
      }
      let m = RE_FILE.exec(text);
      if (m) {
        const [, map, pidText, idText, valueText] = m;
        const pid = Number(pidText);
        const value = Number(valueText);
        const metric = FILE_MAPS[map!];
        if (metric) {
          const inc = increase(`${map}\t${pid}\t${idText}`, value);
          if (inc > 0) {
            const d = entry(pid, idText!);
            d[metric] = (d[metric] ?? 0) + inc;
          }
          return;
        }
        const fdMetric = FD_MAPS[map!];
        if (fdMetric) {
          const inc = increase(`${map}\t${pid}\t${idText}`, value);
          if (inc > 0) {
            const d = entry(pid, `fd:${idText}`);
            d[fdMetric] = (d[fdMetric] ?? 0) + inc;
          }
          return;
        }
        return diagnostic(`unknown map @${map}`);
      }
      if ((m = RE_OPEN_ERR.exec(text))) {
        const [, pidText, errnoText, idText, valueText] = m;
        const inc = increase(`open_e\t${pidText}\t${errnoText}\t${idText}`, Number(valueText));
        if (inc > 0) {
          const d = entry(Number(pidText), idText!);
          const errno = errnoName(Number(errnoText));
          (d.openErrors ??= new Map()).set(errno, (d.openErrors.get(errno) ?? 0) + inc);
        }
        return;
      }
      if ((m = RE_HIST_HEAD.exec(text))) {
        hist = { map: m[1] as 'read_h' | 'write_h', pid: Number(m[2]), id: m[3]! };
        return;
      }
      if ((m = RE_COMM.exec(text))) {
        comms.set(Number(m[1]), m[2]!);
        return;
      }
      if ((m = RE_NAME.exec(text))) {
        names.set(m[1]!, m[2]!);
        return;
      }
      if ((m = RE_REGS_MISS.exec(text))) {
        // Reads/writes whose fd could not be found: lost to the per-file figures.
        const inc = increase('regs_miss', Number(m[1]));
        return inc > 0 ? { kind: 'dropped', count: inc } : undefined;
      }
      if ((m = RE_VFS.exec(text))) {
        const series = VFS_SERIES[m[1]!];
        if (!series) return diagnostic(`unknown map @${m[1]}`);
        const inc = increase(m[1]!, Number(m[2]));
        vfsPending.set(series, (vfsPending.get(series) ?? 0) + inc);
        return;
      }
      if ((m = RE_LOST.exec(text))) return { kind: 'dropped', count: Number(m[1]) };
      return diagnostic(`unrecognised bpftrace output: ${text.slice(0, 120)}`);
    },
    end(): ParseResult {
      // Output cut short (worker killed mid-print): keep what was read.
      const out = flush();
      return out.length > 0 ? out : undefined;
    },
  };
}

function mergeDelta(into: FileDelta, d: FileDelta): void {
  for (const k of Object.keys(SAMPLE_OF) as FileMetric[])
    if (d[k] !== undefined) into[k] = (into[k] ?? 0) + d[k];
  for (const [e, v] of d.openErrors ?? [])
    (into.openErrors ??= new Map()).set(e, (into.openErrors.get(e) ?? 0) + v);
  for (const [le, v] of d.readHist ?? [])
    (into.readHist ??= new Map()).set(le, (into.readHist.get(le) ?? 0) + v);
  for (const [le, v] of d.writeHist ?? [])
    (into.writeHist ??= new Map()).set(le, (into.writeHist.get(le) ?? 0) + v);
}

// ---------------------------------------------------------------------------------------------
// proc-io fallback: the sampler prints `io PID RCHAR WCHAR SYSCR SYSCW READ_BYTES WRITE_BYTES COMM`
// with increases since its previous sample, plus the ready line once it has taken its baseline
// (older samplers printed `ready`: recorded output has it).

const PROC_FIELDS = ['rchar', 'wchar', 'syscr', 'syscw', 'read_bytes', 'write_bytes'] as const;
const RE_PROC = /^io (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (.*)$/;

export function createProcIoParser(_ctx: ParseContext<Options>): Parser {
  return {
    line(text: string): ParseResult {
      if (text === WORKER_READY_LINE || text === 'ready' || text === '') return;
      const m = RE_PROC.exec(text);
      if (!m) return diagnostic(`unrecognised proc-io sampler output: ${text.slice(0, 120)}`);
      const labels = { pid: m[1]!, comm: m[8]! };
      const out: Sample[] = [];
      PROC_FIELDS.forEach((f, i) => {
        const value = Number(m[i + 2]);
        if (value > 0) out.push({ kind: 'sample', series: `proc.io.${f}`, labels, value });
      });
      return out;
    },
  };
}
