import {
  diagnostic,
  pythonKeyOfFile,
  pythonSysPath,
  WORKER_READY_LINE,
  type ParseContext,
  type Parser,
  type TraceRecord,
} from '@scalpels/core';
import { DURATION_BOUNDS_MS } from './schema.js';
import { buildRules, type Rule } from './presets.js';
import { defaultPython } from './checks.js';
import type { Options } from './options.js';

/**
 * Worker lines are JSON objects with a `t` (type) field:
 * - `calls`: per function, process and thread, the increase since the previous line of that
 *   function/process/thread: `calls`, `ns` (inclusive time), `exceptions`, `hist` (bucket index → calls);
 * - `attach`, `detach`, `attach-failed`: process lifecycle;
 * - `dropped`: events lost on the kernel side (USDT technique);
 * - `ready`, `info`: for people reading the raw output, no record.
 */
export function createParser(ctx: ParseContext<Options>): Parser {
  const usdt = ctx.technique === 'usdt' ? usdtFilter(ctx) : undefined;
  const threads = ctx.options.thread;
  let sysPath: string[] | undefined;
  // The node's trusted interpreter, never the target's binary: root must not run a program a
  // traced user may have written.
  const searchPath = (): string[] => (sysPath ??= pythonSysPath(defaultPython()));
  // USDT maps are cumulative: the last count printed per key, to record increases.
  const printed = new Map<string, number>();
  return {
    line(text) {
      if (text.trim() === '' || text === WORKER_READY_LINE) return null;
      if (usdt) return usdtLine(text, usdt, threads, searchPath, printed);
      let m: Record<string, unknown>;
      try {
        const v: unknown = JSON.parse(text);
        if (typeof v !== 'object' || v === null || Array.isArray(v))
          return diagnostic(`not a JSON object: ${cut(text)}`);
        m = v as Record<string, unknown>;
      } catch {
        return diagnostic(`not JSON: ${cut(text)}`);
      }
      const ts = typeof m.ts === 'number' ? m.ts : undefined;
      switch (m.t) {
        case 'calls':
          return callRecords(m, ts) ?? diagnostic(`malformed calls line: ${cut(text)}`);
        case 'attach':
        case 'detach':
        case 'attach-failed': {
          const pid = m.pid;
          const how = m.t === 'attach' ? m.via : m.reason;
          if (typeof pid !== 'number' || typeof how !== 'string')
            return diagnostic(`malformed ${m.t} line: ${cut(text)}`);
          const data: Record<string, unknown> = { pid };
          for (const f of [
            'python',
            'hook',
            'executable',
            'reason',
            'attachMs',
            'techniques',
          ] as const)
            if (m[f] !== undefined) data[f] = m[f];
          // The report groups events by key alone: say which kind of event it is.
          const ev: TraceRecord = { kind: 'event', type: m.t, key: `${m.t}:${how}`, data };
          if (ts !== undefined) ev.ts = ts;
          return ev;
        }
        case 'technique': {
          if (typeof m.pid !== 'number' || typeof m.technique !== 'string')
            return diagnostic(`malformed technique line: ${cut(text)}`);
          const data: Record<string, unknown> = { pid: m.pid };
          if (typeof m.techniques === 'string') data.techniques = m.techniques;
          const ev: TraceRecord = {
            kind: 'event',
            type: 'technique',
            key: `technique:${m.technique}`,
            data,
          };
          if (ts !== undefined) ev.ts = ts;
          return ev;
        }
        case 'dropped':
          return typeof m.count === 'number' && m.count >= 0
            ? { kind: 'dropped', count: m.count }
            : diagnostic(`malformed dropped line: ${cut(text)}`);
        case 'ready':
        case 'info':
          return null;
        default:
          return diagnostic(`unknown line type ${JSON.stringify(m.t)}`);
      }
    },
  };
}

function callRecords(
  m: Record<string, unknown>,
  ts: number | undefined,
): TraceRecord[] | undefined {
  const { function: fn, file, line, pid, thread, calls } = m;
  if (typeof fn !== 'string' || typeof pid !== 'number' || typeof calls !== 'number' || calls < 0)
    return undefined;
  const labels: Record<string, string> = {
    function: fn,
    file: typeof file === 'string' ? file : '',
    line: typeof line === 'number' ? String(line) : '',
    pid: String(pid),
  };
  // Only with the `thread` option: one series per function and process otherwise.
  if (typeof thread === 'string' && thread !== '') labels.thread = thread;
  const stamp = <T extends TraceRecord>(r: T): T => {
    if (ts !== undefined) r.ts = ts;
    return r;
  };
  const out: TraceRecord[] = [];
  if (calls > 0) out.push(stamp({ kind: 'sample', series: 'python.calls', labels, value: calls }));
  if (typeof m.ns === 'number' && m.ns > 0)
    out.push(stamp({ kind: 'sample', series: 'python.call.time', labels, value: m.ns / 1e6 }));
  if (typeof m.exceptions === 'number' && m.exceptions > 0)
    out.push(stamp({ kind: 'sample', series: 'python.exceptions', labels, value: m.exceptions }));
  const hist = m.hist;
  if (hist !== undefined) {
    if (typeof hist !== 'object' || hist === null) return undefined;
    // Buckets arrive as counts per bucket index; series are cumulative (<= le), like Prometheus.
    const per = new Array<number>(DURATION_BOUNDS_MS.length).fill(0);
    for (const [k, v] of Object.entries(hist as Record<string, unknown>)) {
      const i = Number(k);
      if (!Number.isInteger(i) || i < 0 || i >= per.length || typeof v !== 'number')
        return undefined;
      per[i]! += v;
    }
    let cum = 0;
    for (let i = 0; i < per.length; i++) {
      cum += per[i]!;
      if (cum > 0)
        out.push(
          stamp({
            kind: 'sample',
            series: 'python.call.duration',
            labels: { function: fn, pid: String(pid), le: DURATION_BOUNDS_MS[i]! },
            value: cum,
          }),
        );
    }
  }
  return out;
}

function cut(s: string): string {
  return s.length > 120 ? `${s.slice(0, 120)}…` : s;
}

// ---------------------------------------------------------------------------------------------
// USDT technique: bpftrace `-f json` output of a map keyed [pid, tid, file, function, line].

type FileFilter = (file: string, fn: string) => boolean;

function usdtFilter(ctx: ParseContext<Options>): FileFilter {
  const o = ctx.options;
  const rules: Rule[] = buildRules({ function: o.function, file: o.file, preset: o.preset });
  if (rules.length === 0) return () => true;
  const compiled = rules.map((r) => ({
    files: r.files?.map(globToRegExp),
    functions: r.functions,
  }));
  return (file, fn) =>
    compiled.some(
      (r) =>
        (!r.files || r.files.some((g) => g.test(file))) &&
        (!r.functions || r.functions.includes(fn)),
    );
}

/** fnmatch-style glob (`*` also matches `/`, like Python's fnmatch used by the in-process agent). */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (const ch of glob) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

function usdtLine(
  text: string,
  keep: FileFilter,
  threads: boolean,
  sysPath: () => readonly string[],
  printed: Map<string, number>,
): ReturnType<Parser['line']> {
  let m: { type?: unknown; data?: Record<string, unknown> };
  try {
    m = JSON.parse(text) as typeof m;
  } catch {
    return diagnostic(`not JSON: ${cut(text)}`);
  }
  if (m.type === 'attached_probes' || m.type === 'printf') return null;
  if (m.type === 'lost_events') {
    const n = (m.data as { events?: unknown } | undefined)?.events;
    return typeof n === 'number'
      ? { kind: 'dropped', count: n }
      : diagnostic(`malformed lost_events: ${cut(text)}`);
  }
  if (m.type !== 'map' || typeof m.data !== 'object' || m.data === null)
    return diagnostic(`unexpected bpftrace output: ${cut(text)}`);
  const calls = m.data['@calls'];
  if (typeof calls !== 'object' || calls === null)
    return diagnostic(`map without @calls: ${cut(text)}`);
  const out: TraceRecord[] = [];
  for (const [key, value] of Object.entries(calls as Record<string, unknown>)) {
    const parts = key.split(',');
    const head = threads ? 2 : 1;
    if (parts.length < head + 3 || typeof value !== 'number')
      return diagnostic(`malformed @calls entry: ${cut(key)}`);
    const pid = parts[0]!;
    const line = parts.at(-1)!;
    const fn = parts.at(-2)!;
    const file = parts.slice(head, -2).join(',');
    const increase = value - (printed.get(key) ?? 0);
    printed.set(key, value);
    if (!keep(file, fn) || increase <= 0) continue;
    const labels: Record<string, string> = {
      // The key every tracer of Python functions gives (the core's normalizer).
      function: pythonKeyOfFile(file, fn, sysPath()),
      file,
      line,
      pid,
    };
    if (threads) labels.thread = parts[1]!;
    out.push({ kind: 'sample', series: 'python.calls', labels, value: increase });
  }
  return out;
}
