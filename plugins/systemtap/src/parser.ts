import { diagnostic, pythonKeyOfFile, pythonSysPath } from '@scalpels/core';
import type {
  DroppedNotice,
  ParseContext,
  ParseResult,
  Parser,
  Sample,
  TraceEvent,
  TraceRecord,
} from '@scalpels/core';
import { schema } from './schema.js';
import type { Options } from './options.js';

/**
 * The output conventions a SystemTap script follows so that Scalpels understands it (see the
 * README, "Output conventions"). Everything is line based and stateful only through
 * `# scalpels:` header lines, which select the series or event kind the following lines belong to.
 */

type Kind = 'counter' | 'gauge' | 'histogram';

interface SeriesDecl {
  kind: 'series';
  name: string;
  seriesKind: Kind;
  unit: string;
  /** Schema series the points go to. */
  target: string;
  /** The labels of a point, with or without a row key (object literals: cheap on the hot path). */
  labels: (key: string | undefined) => Record<string, string>;
  columns?: string[];
  /** The script prints running totals: emit the increase since the previous total. */
  cumulative: boolean;
}

interface EventDecl {
  kind: 'event';
  name: string;
  fields: string[];
  key?: string;
  duration?: { field: string; toMs: (v: number) => number };
  value?: string;
  ts?: { field: string; toMs: (v: number) => number };
}

type Decl = SeriesDecl | EventDecl;

const NUMBER = /^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/;
const HEADER = /^#\s*scalpels:\s*(\S+)\s*(.*)$/;
/** A row of stap's @hist_log / @hist_linear output: `   16 |@@@@@     5`, `  <0 |  0`, `>100 | 3`. */
const HIST_ROW = /^\s*([<>]?-?\d+)\s+\|(@*)\s*(\d+)\s*$/;
const HIST_TITLE = /^\s*value\s+\|-+\s+count\s*$/;
const HIST_SKIP = /^\s*~\s*$/;
/** Conversions to milliseconds; dividing keeps `716856 ns` at exactly 0.716856 ms. */
const TO_MS: Record<string, (v: number) => number> = {
  ns: (v) => v / 1e6,
  us: (v) => v / 1e3,
  ms: (v) => v,
  s: (v) => v * 1000,
};
const KINDS: readonly Kind[] = ['counter', 'gauge', 'histogram'];
const MAX_SHOWN = 80;
/** Declared names that feed a bundled script's own series instead of the generic ones. */
const DEDICATED: readonly string[] = ['syscalls', 'python_calls'];

function shown(line: string): string {
  return JSON.stringify(line.length > MAX_SHOWN ? `${line.slice(0, MAX_SHOWN)}…` : line);
}

/**
 * `/usr/lib/python3/dist-packages/oslo_messaging/rpc/client.py:call` →
 * `oslo_messaging.rpc.client:call`: the key python-calls gives the same function (the core's
 * normalizer), modules found through `sysPath` (the node's python3's by default).
 */
export function pythonKey(raw: string, sysPath: readonly string[] = hostSysPath()): string {
  const colon = raw.lastIndexOf(':');
  if (colon <= 0) return raw;
  return pythonKeyOfFile(raw.slice(0, colon), raw.slice(colon + 1), sysPath);
}

/** The interpreter python-calls reads module paths from too when the node configures none. */
const hostSysPath = (): readonly string[] => pythonSysPath('/usr/bin/python3');

/** Parses `a=b c=d flag` header attributes. */
function attributes(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const word of text.split(/\s+/)) {
    if (word === '') continue;
    const eq = word.indexOf('=');
    if (eq < 0) out.set(word, 'true');
    else out.set(word.slice(0, eq), word.slice(eq + 1));
  }
  return out;
}

export class ConventionParser implements Parser {
  private readonly decls = new Map<string, Decl>();
  private current: Decl;
  private readonly totals = new Map<string, number>();
  private hist:
    { decl: SeriesDecl; rows: { bound: string; count: number; afterSkip: boolean }[] } | undefined;
  private histSkip = false;
  private pending: TraceRecord[] = [];
  /** Python paths repeat every interval: normalize each once. */
  private readonly pythonKeys = new Map<string, string>();

  constructor(_ctx?: ParseContext<Options>) {
    // Lines before any header are counters of a series named `value`.
    this.current = this.declareSeries('value', new Map());
  }

  line(text: string): ParseResult | DroppedNotice {
    const result = this.lineInner(text.endsWith('\r') ? text.slice(0, -1) : text);
    if (this.pending.length === 0) return result;
    const kind = (result as { kind?: string } | null | undefined)?.kind;
    // Records of a finished histogram wait while the runner takes a diagnostic or a drop notice.
    if (kind === 'diagnostic' || kind === 'dropped') return result;
    const out = [...this.pending, ...records(result as ParseResult)];
    this.pending = [];
    return out;
  }

  end(): ParseResult {
    const out = [...this.pending, ...(this.hist ? records(this.flushHistogram()) : [])];
    this.pending = [];
    return out.length > 0 ? out : null;
  }

  private lineInner(line: string): ParseResult | DroppedNotice {
    if (this.hist) {
      const row = HIST_ROW.exec(line);
      if (row) {
        this.hist.rows.push({ bound: row[1]!, count: Number(row[3]), afterSkip: this.histSkip });
        this.histSkip = false;
        return null;
      }
      if (HIST_SKIP.test(line)) {
        this.histSkip = true;
        return null;
      }
      this.pending.push(...records(this.flushHistogram()));
    }
    return this.lineOutsideHistogram(line);
  }

  private lineOutsideHistogram(line: string): ParseResult | DroppedNotice {
    const trimmed = line.trim();
    if (trimmed === '') return null;
    if (trimmed.startsWith('#')) return this.header(trimmed);
    if (trimmed.startsWith('{')) return this.json(trimmed);
    if (HIST_TITLE.test(trimmed)) {
      const cur = this.current;
      const decl =
        cur.kind === 'series' && cur.seriesKind === 'histogram'
          ? cur
          : this.lookupOrDeclare('histogram', 'histogram');
      this.hist = { decl, rows: [] };
      this.histSkip = false;
      return null;
    }
    const cur = this.current;
    if (cur.kind === 'event') return this.event(cur, line);
    return this.sampleLine(cur, line, trimmed);
  }

  private header(line: string): ParseResult | DroppedNotice {
    const m = HEADER.exec(line);
    if (!m) return null; // an ordinary comment
    const verb = m[1]!;
    const rest = m[2]!.trim();
    switch (verb) {
      case 'ready':
        return null;
      case 'dropped': {
        if (!/^\d+$/.test(rest))
          return diagnostic(`"# scalpels: dropped" needs a count: ${shown(line)}`);
        const count = Number(rest);
        return count > 0 ? { kind: 'dropped', count } : null;
      }
      case 'series': {
        const [name, ...more] = rest.split(/\s+/);
        if (!name) return diagnostic(`"# scalpels: series" needs a name: ${shown(line)}`);
        const attrs = attributes(more.join(' '));
        const known = this.decls.get(`series:${name}`);
        if (known && attrs.size === 0) {
          this.current = known;
          return null;
        }
        const problem = checkSeriesAttrs(attrs);
        if (problem) return diagnostic(`${problem}: ${shown(line)}`);
        this.current = this.declareSeries(name, attrs);
        return null;
      }
      case 'event': {
        const [name, ...more] = rest.split(/\s+/);
        if (!name) return diagnostic(`"# scalpels: event" needs a name: ${shown(line)}`);
        const attrs = attributes(more.join(' '));
        const known = this.decls.get(`event:${name}`);
        if (known && attrs.size === 0) {
          this.current = known;
          return null;
        }
        const decl = declareEvent(name, attrs);
        if (typeof decl === 'string') return diagnostic(`${decl}: ${shown(line)}`);
        this.decls.set(`event:${name}`, decl);
        this.current = decl;
        return null;
      }
      default:
        return diagnostic(`unknown "# scalpels:" header ${JSON.stringify(verb)}`);
    }
  }

  private lookupOrDeclare(name: string, kind: Kind): SeriesDecl {
    const known = this.decls.get(`series:${name}`);
    if (known?.kind === 'series') return known;
    return this.declareSeries(name, new Map([['kind', kind]]));
  }

  private declareSeries(name: string, attrs: Map<string, string>): SeriesDecl {
    const seriesKind = (attrs.get('kind') ?? 'counter') as Kind;
    const dedicated = `systemtap.${name}`;
    const own = DEDICATED.includes(name) ? schema.series[dedicated] : undefined;
    const columns = attrs
      .get('columns')
      ?.split(',')
      .filter((c) => c !== '');
    const cumulative = attrs.get('cumulative') === 'true';
    let decl: SeriesDecl;
    if (own && own.kind === seriesKind) {
      decl = {
        kind: 'series',
        name,
        seriesKind,
        unit: own.unit,
        target: dedicated,
        labels: dedicatedLabels(name, this.pythonKeys),
        columns,
        cumulative,
      };
    } else {
      const unit = attrs.get('unit') ?? 'count';
      const labels: SeriesDecl['labels'] =
        seriesKind === 'histogram'
          ? (k): Record<string, string> =>
              k === undefined ? { series: name, unit } : { series: name, unit, le: k }
          : (k): Record<string, string> =>
              k === undefined ? { series: name, unit } : { series: name, unit, key: k };
      decl = {
        kind: 'series',
        name,
        seriesKind,
        unit,
        target: `systemtap.${seriesKind}`,
        labels,
        columns,
        cumulative,
      };
    }
    this.decls.set(`series:${name}`, decl);
    return decl;
  }

  private sample(decl: SeriesDecl, key: string | undefined, value: number): Sample | undefined {
    let v = value;
    if (decl.cumulative) {
      const id = `${decl.name}\u0000${key ?? ''}`;
      const prev = this.totals.get(id);
      this.totals.set(id, value);
      // A total that went down means the script reset it: the new total is all increase.
      if (prev !== undefined && value >= prev) v = value - prev;
    }
    return { kind: 'sample', series: decl.target, labels: decl.labels(key), value: v };
  }

  private sampleLine(decl: SeriesDecl, line: string, trimmed: string): ParseResult {
    if (decl.seriesKind === 'histogram') {
      return diagnostic(
        `histogram series "${decl.name}" expects stap @hist output: ${shown(line)}`,
      );
    }
    if (NUMBER.test(trimmed)) return this.sample(decl, undefined, Number(trimmed));
    if (decl.columns) {
      const cells = trimmed.split(/\s+/);
      if (cells.length === decl.columns.length && cells.every((c) => NUMBER.test(c))) {
        return cells.map((c, i) => this.sample(decl, decl.columns![i], Number(c))!);
      }
      return diagnostic(
        `expected ${decl.columns.length} numbers (${decl.columns.join(' ')}) for series "${decl.name}": ${shown(line)}`,
      );
    }
    // `key<TAB>value` keeps spaces in the key; otherwise the last word is the value.
    const tab = line.lastIndexOf('\t');
    let key: string;
    let value: string;
    if (tab >= 0) {
      key = line.slice(0, tab).trim();
      value = line.slice(tab + 1).trim();
    } else {
      const sp = trimmed.lastIndexOf(' ');
      if (sp < 0) return diagnostic(`not a number, key/value or event line: ${shown(line)}`);
      key = trimmed.slice(0, sp).trim();
      value = trimmed.slice(sp + 1);
    }
    if (key === '' || !NUMBER.test(value)) {
      return diagnostic(`not a number, key/value or event line: ${shown(line)}`);
    }
    return this.sample(decl, key, Number(value));
  }

  private event(decl: EventDecl, line: string): ParseResult {
    const cells = line.split('\t');
    if (cells.length !== decl.fields.length) {
      return diagnostic(
        `event "${decl.name}" expects ${decl.fields.length} tab-separated fields (${decl.fields.join(',')}), got ${cells.length}: ${shown(line)}`,
      );
    }
    return buildEvent(decl, cells);
  }

  private json(line: string): ParseResult | DroppedNotice {
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      return diagnostic(`malformed JSON line: ${shown(line)}`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      return diagnostic(`JSON line is not an object: ${shown(line)}`);
    }
    const o = obj as Record<string, unknown>;
    if (typeof o.dropped === 'number' && Object.keys(o).length === 1) {
      return o.dropped > 0 ? { kind: 'dropped', count: o.dropped } : null;
    }
    if (typeof o.series === 'string') {
      if (typeof o.value !== 'number')
        return diagnostic(`JSON sample without a numeric "value": ${shown(line)}`);
      const known = this.decls.get(`series:${o.series}`);
      let decl: SeriesDecl;
      if (known?.kind === 'series') decl = known;
      else {
        const attrs = new Map<string, string>();
        if (typeof o.kind === 'string') attrs.set('kind', o.kind);
        if (typeof o.unit === 'string') attrs.set('unit', o.unit);
        const problem = checkSeriesAttrs(attrs);
        if (problem) return diagnostic(`${problem}: ${shown(line)}`);
        decl = this.declareSeries(o.series, attrs);
      }
      if (decl.seriesKind === 'histogram' && typeof o.le !== 'string' && typeof o.le !== 'number') {
        return diagnostic(`JSON histogram sample without "le": ${shown(line)}`);
      }
      const key = decl.seriesKind === 'histogram' ? o.le : o.key;
      const s = this.sample(
        decl,
        key === undefined || key === null ? undefined : String(key),
        o.value,
      );
      if (s && typeof o.ts === 'number') s.ts = o.ts;
      return s;
    }
    if (typeof o.event === 'string') {
      const { event, key, durationMs, value, ts, ...rest } = o;
      const ev: TraceEvent = {
        kind: 'event',
        type: 'systemtap.event',
        key: typeof key === 'string' || typeof key === 'number' ? String(key) : event,
        data: { event, ...rest },
      };
      if (typeof durationMs === 'number') ev.durationMs = durationMs;
      if (typeof value === 'number') ev.value = value;
      if (typeof ts === 'number') ev.ts = ts;
      return ev;
    }
    return diagnostic(`JSON line has neither "series", "event" nor "dropped": ${shown(line)}`);
  }

  private flushHistogram(): ParseResult {
    const h = this.hist!;
    this.hist = undefined;
    this.histSkip = false;
    const log = isLogHistogram(h.rows);
    let step = Infinity;
    for (let i = 1; i < h.rows.length; i++) {
      const a = h.rows[i - 1]!.bound;
      const b = h.rows[i]!.bound;
      if (!h.rows[i]!.afterSkip && /^-?\d+$/.test(a) && /^-?\d+$/.test(b)) {
        step = Math.min(step, Number(b) - Number(a));
      }
    }
    if (!Number.isFinite(step) || step <= 0) step = 1;
    const out: TraceRecord[] = [];
    for (const r of h.rows) {
      let le: string;
      if (r.bound.startsWith('>')) le = '+Inf';
      else if (r.bound.startsWith('<')) le = String(Number(r.bound.slice(1)) - 1);
      else {
        const v = Number(r.bound);
        le = String(log ? logUpper(v) : v + step - 1);
      }
      const s = this.sample(h.decl, le, r.count);
      if (s) out.push(s);
    }
    return out;
  }
}

function dedicatedLabels(name: string, cache: Map<string, string>): SeriesDecl['labels'] {
  if (name === 'python_calls') {
    return (k): Record<string, string> => {
      if (k === undefined) return {};
      let f = cache.get(k);
      if (f === undefined) {
        f = pythonKey(k);
        if (cache.size < 100_000) cache.set(k, f);
      }
      return { function: f };
    };
  }
  return (k): Record<string, string> => (k === undefined ? {} : { syscall: k });
}

/** Upper bound of a @hist_log bucket: 0→0, 1→1, 2→3, 4→7; negatives mirror (-2 covers -3..-2). */
function logUpper(v: number): number {
  if (v >= -1 && v <= 1) return v;
  return v > 0 ? 2 * v - 1 : v;
}

function isPow2(v: number): boolean {
  const a = Math.abs(v);
  return a === 0 || (Number.isInteger(a) && (a & (a - 1)) === 0);
}

function nextLog(v: number): number {
  if (v === -1) return 0;
  if (v === 0) return 1;
  return v > 0 ? v * 2 : v / 2;
}

function isLogHistogram(rows: readonly { bound: string; afterSkip: boolean }[]): boolean {
  const values = rows.filter((r) => /^-?\d+$/.test(r.bound));
  if (rows.length !== values.length) return false; // @hist_log has no under/overflow rows
  if (!values.every((r) => isPow2(Number(r.bound)))) return false;
  for (let i = 1; i < values.length; i++) {
    if (values[i]!.afterSkip) continue;
    if (Number(values[i]!.bound) !== nextLog(Number(values[i - 1]!.bound))) return false;
  }
  return true;
}

function checkSeriesAttrs(attrs: Map<string, string>): string | undefined {
  const kind = attrs.get('kind');
  if (kind !== undefined && !KINDS.includes(kind as Kind)) {
    return `series kind must be counter, gauge or histogram, not ${JSON.stringify(kind)}`;
  }
  for (const k of attrs.keys()) {
    if (!['kind', 'unit', 'columns', 'cumulative'].includes(k)) {
      return `unknown series attribute ${JSON.stringify(k)}`;
    }
  }
  return undefined;
}

function timeField(
  spec: string | undefined,
  what: string,
): { field: string; toMs: (v: number) => number } | string | undefined {
  if (spec === undefined) return undefined;
  const [field, unit = 'ms'] = spec.split(':');
  const toMs = TO_MS[unit];
  if (!field || toMs === undefined)
    return `${what} must be FIELD:ns|us|ms|s, not ${JSON.stringify(spec)}`;
  return { field, toMs };
}

function declareEvent(name: string, attrs: Map<string, string>): EventDecl | string {
  const fields = attrs
    .get('fields')
    ?.split(',')
    .filter((f) => f !== '');
  if (!fields || fields.length === 0) return `event "${name}" needs fields=a,b,c`;
  for (const k of attrs.keys()) {
    if (!['fields', 'key', 'duration', 'value', 'ts'].includes(k))
      return `unknown event attribute ${JSON.stringify(k)}`;
  }
  const duration = timeField(attrs.get('duration'), 'duration');
  if (typeof duration === 'string') return duration;
  const ts = timeField(attrs.get('ts'), 'ts');
  if (typeof ts === 'string') return ts;
  const decl: EventDecl = {
    kind: 'event',
    name,
    fields,
    key: attrs.get('key'),
    value: attrs.get('value'),
    duration,
    ts,
  };
  for (const f of [decl.key, decl.value, duration?.field, ts?.field]) {
    if (f !== undefined && !fields.includes(f))
      return `event "${name}" refers to field "${f}" that is not in fields`;
  }
  return decl;
}

function buildEvent(decl: EventDecl, cells: readonly string[]): ParseResult {
  const data: Record<string, unknown> = { event: decl.name };
  const fields = decl.fields;
  for (let i = 0; i < fields.length; i++) {
    const v = cells[i]!;
    data[fields[i]!] = NUMBER.test(v) ? Number(v) : v;
  }
  const cell = (field: string): string => cells[fields.indexOf(field)]!;
  const ev: TraceEvent = {
    kind: 'event',
    type: 'systemtap.event',
    key: decl.key !== undefined ? cell(decl.key) : decl.name,
    data,
  };
  if (decl.duration) {
    const raw = cell(decl.duration.field);
    if (!NUMBER.test(raw))
      return diagnostic(
        `event "${decl.name}": duration field "${decl.duration.field}" is not a number: ${JSON.stringify(raw)}`,
      );
    ev.durationMs = decl.duration.toMs(Number(raw));
  }
  if (decl.value !== undefined) {
    const raw = cell(decl.value);
    if (!NUMBER.test(raw))
      return diagnostic(
        `event "${decl.name}": value field "${decl.value}" is not a number: ${JSON.stringify(raw)}`,
      );
    ev.value = Number(raw);
  }
  if (decl.ts) {
    const raw = cell(decl.ts.field);
    if (!NUMBER.test(raw))
      return diagnostic(
        `event "${decl.name}": ts field "${decl.ts.field}" is not a number: ${JSON.stringify(raw)}`,
      );
    ev.ts = Math.round(decl.ts.toMs(Number(raw)));
  }
  return ev;
}

function records(r: ParseResult): TraceRecord[] {
  if (r === null || r === undefined) return [];
  return Array.isArray(r) ? [...(r as TraceRecord[])] : [r as TraceRecord];
}

export function createParser(ctx: ParseContext<Options>): Parser {
  return new ConventionParser(ctx);
}
