import {
  diagnostic,
  note,
  WORKER_READY_LINE,
  type ParseContext,
  type ParseNote,
  type Parser,
  type Sample,
  type TraceEvent,
  type TraceRecord,
} from '@scalpels/core';
import { fingerprint, type Dialect } from './fingerprint.js';
import type { CollectorLine, DigestLine, StatementLine } from './protocol.js';
import type { Options } from './options.js';

const PS_PER_MS = 1e9;
/** Events may fall short of the digest totals by this much before the tracer says so. */
const EVENTS_TOLERANCE = 0.02;

/** Words after which string literals of a statement are secrets (until the statement ends). */
const SECRET_WORDS = new Set([
  'PASSWORD',
  'OLD_PASSWORD',
  'MASTER_PASSWORD',
  'SOURCE_PASSWORD',
  'IDENTIFIED',
  'MASTER_SSL_KEY',
]);

interface SqlToken {
  kind: 'string' | 'word' | 'hex' | 'other' | 'end';
  start: number;
  end: number;
}

/**
 * Splits SQL into the tokens redaction cares about: string literals ('..', "..", $tag$..$tag$,
 * with both backslash and doubled-quote escapes, so that a literal is never cut short: an
 * unterminated one runs to the end), words, hex literals and statement ends. Comments are skipped,
 * except MySQL's executable comments (`/*! ... *\/`, `/*M! ... *\/`), whose content is code.
 */
function sqlTokens(text: string): SqlToken[] {
  const out: SqlToken[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text[i]!;
    if (c === '/' && text[i + 1] === '*') {
      const m = /^\/\*(M?!\d*)/.exec(text.slice(i, i + 12));
      if (m) {
        i += m[0].length; // executable comment: its content is tokenized as code
        continue;
      }
      const close = text.indexOf('*/', i + 2);
      i = close < 0 ? n : close + 2;
      continue;
    }
    if (c === '*' && text[i + 1] === '/') {
      i += 2;
      continue;
    }
    if ((c === '-' && text[i + 1] === '-') || c === '#') {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
      continue;
    }
    if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < n) {
        if (text[j] === '\\') j += 2;
        else if (text[j] === c && text[j + 1] === c) j += 2;
        else if (text[j] === c) break;
        else j++;
      }
      const end = Math.min(n, j + 1);
      out.push({ kind: 'string', start: i, end });
      i = end;
      continue;
    }
    if (c === '$') {
      const tag = /^\$[A-Za-z_]?[A-Za-z0-9_]*\$/.exec(text.slice(i, i + 64));
      if (tag) {
        const close = text.indexOf(tag[0], i + tag[0].length);
        const end = close < 0 ? n : close + tag[0].length;
        out.push({ kind: 'string', start: i, end });
        i = end;
        continue;
      }
    }
    if (c === '`') {
      const close = text.indexOf('`', i + 1);
      const end = close < 0 ? n : close + 1;
      out.push({ kind: 'word', start: i + 1, end: Math.max(i + 1, end - 1) });
      i = end;
      continue;
    }
    const hex = /^0[xX][0-9A-Fa-f]+|^0[bB][01]+/.exec(text.slice(i, i + 4096));
    if (hex) {
      out.push({ kind: 'hex', start: i, end: i + hex[0].length });
      i += hex[0].length;
      continue;
    }
    const word = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i, i + 256));
    if (word) {
      out.push({ kind: 'word', start: i, end: i + word[0].length });
      i += word[0].length;
      continue;
    }
    if (c === ';') out.push({ kind: 'end', start: i, end: i + 1 });
    else if (!/\s/.test(c)) out.push({ kind: 'other', start: i, end: i + 1 });
    i++;
  }
  return out;
}

/**
 * Passwords in statement text never reach the store. After a password word (PASSWORD,
 * MASTER_PASSWORD, IDENTIFIED, ...) every string or hex literal up to the end of the statement
 * becomes '***', whatever comes in between (comments, `=`, `BY`, `WITH plugin`, `USING`, `VIA`,
 * `PASSWORD(`), except the account named after FOR (`SET PASSWORD FOR 'u'@'h' = ...`). Erring on
 * the side of hiding: a query on a table named password loses its literals in the event text (its
 * fingerprint, the report key, has none anyway).
 */
export function redact(text: string): string {
  const hide: SqlToken[] = [];
  let armed = false;
  let account = 0; // tokens of the account after FOR still to keep: 'u' @ 'h'
  for (const t of sqlTokens(text)) {
    if (t.kind === 'end') {
      armed = false;
      account = 0;
      continue;
    }
    if (t.kind === 'word') {
      const w = text.slice(t.start, t.end).toUpperCase();
      if (SECRET_WORDS.has(w)) armed = true;
      else if (armed && w === 'FOR') account = 3;
      else if (account > 0) account--; // an unquoted user name or host
      continue;
    }
    if (account > 0) {
      if (t.kind === 'string' || (t.kind === 'other' && text[t.start] === '@')) {
        account--;
        continue;
      }
      account = 0;
    }
    if (armed && (t.kind === 'string' || t.kind === 'hex')) hide.push(t);
  }
  if (hide.length === 0) return text;
  let out = '';
  let at = 0;
  for (const t of hide) {
    out += `${text.slice(at, t.start)}'***'`;
    at = t.end;
  }
  return out + text.slice(at);
}

// Server digest texts come back every interval: fingerprint each once.
const digestFingerprints = new Map<string, string>();

function digestFingerprint(text: string, dialect: Dialect): string {
  const key = `${dialect}\u0000${text}`;
  let fp = digestFingerprints.get(key);
  if (fp === undefined) {
    if (digestFingerprints.size >= 20_000) digestFingerprints.clear();
    fp = fingerprint(text, dialect);
    digestFingerprints.set(key, fp);
  }
  return fp;
}

function digestRecords(l: DigestLine): Sample[] {
  const dialect: Dialect = l.engine === 'postgresql' ? 'postgresql' : 'mysql';
  const labels = {
    digest: l.digest,
    fingerprint: l.fingerprint ?? digestFingerprint(l.text, dialect),
    schema: l.schema,
  };
  const ms = (ps: string | undefined, plain: number | undefined): number | undefined =>
    ps !== undefined ? Number(BigInt(ps)) / PS_PER_MS : plain;
  const out: Sample[] = [{ kind: 'sample', series: 'sql.calls', labels, value: l.calls, ts: l.ts }];
  // Zero increments of the secondary counters are left out (a digest has ten series; most are
  // zero most of the time): a missing point adds nothing to a counter's sum.
  const add = (series: string, value: number | undefined, keepZero = false): void => {
    if (value !== undefined && Number.isFinite(value) && (keepZero || value !== 0))
      out.push({ kind: 'sample', series, labels, value, ts: l.ts });
  };
  add('sql.time', ms(l.timePs, l.timeMs), true);
  add('sql.lock_time', ms(l.lockPs, undefined));
  add('sql.max_time', ms(l.maxPs, l.maxMs), true);
  add('sql.rows_sent', l.rowsSent);
  add('sql.rows_examined', l.rowsExamined);
  add('sql.rows_affected', l.rowsAffected);
  add('sql.errors', l.errors);
  add('sql.warnings', l.warnings);
  add('sql.no_index_used', l.noIndexUsed);
  return out;
}

function statementEvent(l: StatementLine, textMax: number): TraceEvent {
  const dialect: Dialect = l.source === 'pg-log' ? 'postgresql' : 'mysql';
  // Some clients (mysqlslap) send a terminating NUL that the server logs.
  const raw = l.text.replace(/\0/g, '');
  let text = redact(raw);
  if (text.length > textMax) text = `${text.slice(0, textMax)}...`;
  const data: Record<string, unknown> = { source: l.source, text };
  for (const k of [
    'thread',
    'user',
    'host',
    'schema',
    'lockMs',
    'rowsSent',
    'rowsExamined',
    'rowsAffected',
  ] as const)
    if (l[k] !== undefined) data[k] = l[k];
  const ev: TraceEvent = {
    kind: 'event',
    type: 'statement',
    key: l.fingerprint ?? fingerprint(raw, dialect),
    ts: l.ts,
    data,
  };
  if (l.durationMs !== undefined) ev.durationMs = l.durationMs;
  if (l.rowsExamined !== undefined) ev.value = l.rowsExamined;
  return ev;
}

export function createParser(ctx: ParseContext<Options>): Parser {
  const textMax = ctx.options['text-max'];
  // Events against digest totals: an undercount of the events is said, never silent.
  let eventsSource: string | undefined;
  let digests = false;
  let digestCalls = 0;
  let statements = 0;
  return {
    end() {
      const filtered = Array.isArray(ctx.options.client) && ctx.options.client.length > 0;
      if (!eventsSource || !digests || filtered || digestCalls === 0) return null;
      if (statements >= digestCalls * (1 - EVENTS_TOLERANCE)) return null;
      const missed = digestCalls - statements;
      const pct = ((100 * missed) / digestCalls).toFixed(1);
      return [
        note(
          `events incomplete: ${statements} statement events for ${digestCalls} statements counted by performance_schema digests (${missed}, ${pct} %, missing) from the ${eventsSource}: connections opened before tracing (pools of running services) keep their own long_query_time. Fix: events-source=general-log (sees every connection, no durations), or restart the services after the tracer started`,
        ) satisfies ParseNote,
      ];
    },
    line(text) {
      if (text.trim() === '' || text === WORKER_READY_LINE) return null;
      let l: CollectorLine;
      try {
        l = JSON.parse(text) as CollectorLine;
      } catch {
        return diagnostic(`not a collector line: ${text.slice(0, 80)}`);
      }
      if (typeof l !== 'object' || l === null)
        return diagnostic(`not a collector line: ${text.slice(0, 80)}`);
      switch (l.t) {
        case 'ready':
          if (typeof l.events === 'string') eventsSource = l.events.split(' ')[0];
          digests = l.technique === 'mysql-digest' || l.technique === 'pg-stat-statements';
          return null;
        case 'digest':
          if (typeof l.calls !== 'number' || typeof l.text !== 'string')
            return diagnostic('digest line without calls or text');
          digestCalls += l.calls;
          return digestRecords(l);
        case 'status': {
          const out: TraceRecord[] = [];
          for (const [command, value] of Object.entries(l.counters ?? {}))
            if (typeof value === 'number')
              out.push({
                kind: 'sample',
                series: 'sql.commands',
                labels: { command },
                value,
                ts: l.ts,
              });
          return out;
        }
        case 'statement':
          if (typeof l.text !== 'string') return diagnostic('statement line without text');
          statements++;
          return statementEvent(l, textMax);
        case 'note':
          return typeof l.message === 'string' ? note(l.message) : null;
        case 'lost':
          return { kind: 'dropped', count: typeof l.count === 'number' ? l.count : 1 };
        default:
          return diagnostic(`unknown collector line type: ${text.slice(0, 80)}`);
      }
    },
  };
}
