import {
  diagnostic,
  type Labels,
  type ParseContext,
  type Parser,
  type Sample,
} from '@scalpels/core';
import { errnoName, syscallName, syscallTable } from './names.js';
import {
  END_LINE,
  LEGACY_READY_PREFIX,
  READY_PREFIX,
  TICK_LINE,
  type Grouping,
} from './program.js';
import type { Options } from './options.js';

export const OTHER_COMM = '(other)';

/** Picks the parser of the technique check() chose (bpftrace when none was given). */
export function createParser(ctx: ParseContext<Options>): Parser {
  const { top, 'max-keys': maxKeys } = ctx.options;
  switch (ctx.technique) {
    case 'strace':
      return straceSummaryParser();
    case 'perf':
      return perfSummaryParser();
    default:
      return bpftraceParser({ top, maxKeys });
  }
}

// ---------------------------------------------------------------------------------------------
// bpftrace -f json

interface Header {
  arch: string;
  grouping: Grouping;
}

/** One map entry after its key was split: who (labels without syscall), syscall number, rest. */
interface Entry {
  who: Record<string, string>;
  nr: number;
  /** Extra numeric key parts after the syscall number (the errno of @errors). */
  extra: number[];
}

type JsonLine = { type?: unknown; data?: unknown };

/**
 * Parses the JSON lines of the program in program.ts. bpftrace prints cumulative maps; this
 * keeps the last value of each key and emits the increase, so counters sum to the exact total.
 */
export function bpftraceParser(opts: { top: number; maxKeys?: number }): Parser {
  let header: Header | undefined;
  /** Maps seen at their capacity: the kernel silently stops adding keys to a full map. */
  const full = new Set<string>();
  const comms = new Map<string, string>();
  const last = new Map<string, number>();

  const increase = (id: string, value: number): number => {
    const prev = last.get(id) ?? 0;
    last.set(id, value);
    // A smaller value means the entry was deleted and created again: all of it is new.
    return value >= prev ? value - prev : value;
  };

  /** Splits a bpftrace map key (`pid,nr`, `comm,nr` or `nr`, then `numericParts` more numbers). */
  const splitKey = (key: string, numericParts: number): Entry | undefined => {
    if (!header) return undefined;
    const parts = key.split(',');
    const nums: number[] = [];
    for (let i = 0; i < numericParts + 1; i++) {
      const text = parts.pop();
      if (text === undefined || !/^-?\d+$/.test(text)) return undefined;
      nums.unshift(Number(text));
    }
    const [nr, ...extra] = nums as [number, ...number[]];
    const rest = parts.join(',');
    let who: Record<string, string>;
    if (header.grouping === 'process') {
      if (!/^\d+$/.test(rest)) return undefined;
      who = { pid: rest, comm: comms.get(rest) ?? '?' };
    } else if (header.grouping === 'comm') {
      if (parts.length === 0) return undefined;
      who = { comm: rest };
    } else {
      if (parts.length !== 0) return undefined;
      who = {};
    }
    return { who, nr, extra };
  };

  /** Per-process-name mode: keeps the `top` names with most of this line's increase, folds the rest. */
  const fold = (samples: Sample[]): Sample[] => {
    if (header?.grouping !== 'comm') return samples;
    const byComm = new Map<string, number>();
    for (const s of samples)
      byComm.set(s.labels!.comm!, (byComm.get(s.labels!.comm!) ?? 0) + s.value);
    if (byComm.size <= opts.top) return samples;
    const kept = new Set(
      [...byComm.entries()]
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
        .slice(0, opts.top)
        .map(([c]) => c),
    );
    const out: Sample[] = [];
    const other = new Map<string, Sample>();
    for (const s of samples) {
      if (kept.has(s.labels!.comm!)) {
        out.push(s);
        continue;
      }
      const labels: Labels = { ...s.labels, comm: OTHER_COMM };
      const id = JSON.stringify(labels);
      const o = other.get(id);
      if (o) o.value += s.value;
      else other.set(id, { kind: 'sample', series: s.series, labels, value: s.value });
    }
    return [...out, ...other.values()];
  };

  const counterMap = (
    name: string,
    data: Record<string, unknown>,
    series: string,
    numericParts: number,
    scale = 1,
  ): Sample[] | string => {
    const table = syscallTable(header!.arch);
    const out: Sample[] = [];
    for (const [key, raw] of Object.entries(data)) {
      if (typeof raw !== 'number') return `${name}[${key}]: value is not a number`;
      const e = splitKey(key, numericParts);
      if (!e) return `${name}: bad key ${JSON.stringify(key)}`;
      const inc = increase(`${name}\0${key}`, raw);
      if (inc <= 0) continue;
      const labels: Record<string, string> = { ...e.who, syscall: syscallName(table, e.nr) };
      if (name === '@errors') labels.errno = errnoName(e.extra[0]!);
      out.push({ kind: 'sample', series, labels, value: inc / scale });
    }
    return fold(out);
  };

  const histMap = (data: Record<string, unknown>): Sample[] | string => {
    const table = syscallTable(header!.arch);
    const out: Sample[] = [];
    for (const [key, buckets] of Object.entries(data)) {
      const e = splitKey(key, 0);
      if (!e || !Array.isArray(buckets)) return `@latency: bad entry ${JSON.stringify(key)}`;
      for (const b of buckets as { min?: unknown; max?: unknown; count?: unknown }[]) {
        if (typeof b?.count !== 'number') return `@latency[${key}]: bucket without a count`;
        // The last bucket of a log2 histogram has no upper bound.
        const le = typeof b.max === 'number' ? String(b.max) : '+Inf';
        const inc = increase(`@latency\0${key}\0${le}`, b.count);
        if (inc <= 0) continue;
        out.push({
          kind: 'sample',
          series: 'syscalls.latency',
          labels: { ...e.who, syscall: syscallName(table, e.nr), le },
          value: inc,
        });
      }
    }
    return fold(out);
  };

  return {
    line(text) {
      if (text.trim() === '') return null;
      let msg: JsonLine;
      try {
        msg = JSON.parse(text) as JsonLine;
      } catch {
        return diagnostic(`not a bpftrace JSON line: ${text.slice(0, 120)}`);
      }
      if (msg === null || typeof msg !== 'object')
        return diagnostic(`not a bpftrace message: ${text.slice(0, 120)}`);
      switch (msg.type) {
        case 'printf': {
          const s = typeof msg.data === 'string' ? msg.data.trim() : '';
          const prefix = [READY_PREFIX, LEGACY_READY_PREFIX].find((p) => s.startsWith(p));
          if (prefix) {
            const f = Object.fromEntries(
              s
                .slice(prefix.length)
                .trim()
                .split(/\s+/)
                .map((kv) => kv.split('=') as [string, string]),
            );
            if (!['process', 'comm', 'total'].includes(f.grouping ?? '') || !f.arch)
              return diagnostic(`bad ready line: ${s}`);
            header = { arch: f.arch, grouping: f.grouping as Grouping };
            return null;
          }
          if (s === END_LINE || s === TICK_LINE) return null;
          return diagnostic(`unexpected bpftrace output: ${s.slice(0, 120)}`);
        }
        case 'lost_events': {
          const n = (msg.data as { events?: unknown } | undefined)?.events;
          return typeof n === 'number'
            ? { kind: 'dropped', count: n }
            : diagnostic('lost_events without a count');
        }
        case 'map':
        case 'hist': {
          if (!header) return diagnostic('map printed before the ready line');
          const maps = msg.data;
          if (maps === null || typeof maps !== 'object')
            return diagnostic('map message without data');
          const records: Sample[] = [];
          for (const [name, data] of Object.entries(maps as Record<string, unknown>)) {
            if (data === null || typeof data !== 'object') return diagnostic(`${name}: not a map`);
            const d = data as Record<string, unknown>;
            if (opts.maxKeys !== undefined && Object.keys(d).length >= opts.maxKeys) full.add(name);
            let got: Sample[] | string;
            if (name === '@comm') {
              for (const [pid, comm] of Object.entries(d))
                if (typeof comm === 'string') comms.set(pid, comm);
              got = [];
            } else if (name === '@calls') got = counterMap(name, d, 'syscalls.calls', 0);
            else if (name === '@errors') got = counterMap(name, d, 'syscalls.errors', 1);
            else if (name === '@time_ns') got = counterMap(name, d, 'syscalls.time', 0, 1e6);
            else if (name === '@latency') got = histMap(d);
            else got = [];
            if (typeof got === 'string') return diagnostic(got);
            records.push(...got);
          }
          return records;
        }
        default:
          // attached_probes and anything informational.
          return null;
      }
    },
    end() {
      // Counted as a parse error, so the report shows that some counts are missing.
      if (full.size > 0)
        return diagnostic(
          `kernel map ${[...full].join(', ')} reached max-keys=${opts.maxKeys}: later keys were not counted (raise max-keys)`,
        );
      return null;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// strace -c -f -w

/**
 * Parses the summary table strace prints when it detaches: one row per syscall, totals only
 * (no per-process split, errors without errno).
 */
export function straceSummaryParser(): Parser {
  let inTable = false;
  return {
    line(text) {
      const t = text.trim();
      if (t === '') return null;
      if (/^% time\s+seconds\s+usecs\/call\s+calls\s+errors\s+syscall$/.test(t)) {
        inTable = true;
        return null;
      }
      if (/^-+( -+)+$/.test(t)) return null;
      if (!inTable) return diagnostic(`unexpected strace output: ${t.slice(0, 120)}`);
      const m = /^(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+)\s+(\d+)\s+(?:(\d+)\s+)?(\S+)$/.exec(t);
      if (!m) return diagnostic(`bad strace summary row: ${t.slice(0, 120)}`);
      const syscall = m[6]!;
      if (syscall === 'total') return null;
      const calls = Number(m[4]);
      const errors = m[5] === undefined ? 0 : Number(m[5]);
      const out: Sample[] = [
        { kind: 'sample', series: 'syscalls.calls', labels: { syscall }, value: calls },
        {
          kind: 'sample',
          series: 'syscalls.time',
          labels: { syscall },
          value: Number(m[2]) * 1000,
        },
      ];
      if (errors > 0)
        out.push({
          kind: 'sample',
          series: 'syscalls.errors',
          labels: { syscall, errno: 'unknown' },
          value: errors,
        });
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// perf trace -s

/**
 * Parses perf trace's summary: a block per thread (`comm (tid), N events, P%`), a row per
 * syscall; `LOST N events!` lines are the kernel's drops.
 */
export function perfSummaryParser(): Parser {
  let who: { pid: string; comm: string } | undefined;
  return {
    line(text) {
      const t = text.trim();
      if (t === '' || t === 'Summary of events:') return null;
      // Records the kernel could not write to perf's ring buffers.
      const lost = /^LOST (\d+) events!$/.exec(t);
      if (lost) return { kind: 'dropped', count: Number(lost[1]) };
      const thread = /^(.*) \((\d+)\), (\d+) events, [\d.]+%$/.exec(t);
      if (thread) {
        who = { pid: thread[2]!, comm: thread[1]! };
        return null;
      }
      if (
        /^syscall\s+calls\s+errors\s+total/.test(t) ||
        t.startsWith('(msec)') ||
        /^-+( +-+)+$/.test(t)
      )
        return null;
      const m =
        /^(\S+)\s+(\d+)\s+(\d+)\s+(\d+\.\d+)\s+\d+\.\d+\s+\d+\.\d+\s+\d+\.\d+\s+\d+\.\d+%$/.exec(t);
      if (!m || !who) return diagnostic(`bad perf trace summary line: ${t.slice(0, 120)}`);
      const labels = { ...who, syscall: m[1]! };
      const out: Sample[] = [
        { kind: 'sample', series: 'syscalls.calls', labels, value: Number(m[2]) },
        { kind: 'sample', series: 'syscalls.time', labels, value: Number(m[4]) },
      ];
      if (Number(m[3]) > 0)
        out.push({
          kind: 'sample',
          series: 'syscalls.errors',
          labels: { ...labels, errno: 'unknown' },
          value: Number(m[3]),
        });
      return out;
    },
  };
}
