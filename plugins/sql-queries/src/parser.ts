import {
  diagnostic,
  type ParseContext,
  type Parser,
  type Sample,
  type TraceEvent,
  type TraceRecord,
} from '@scalpels/core';
import { fingerprint, type Dialect } from './fingerprint.js';
import type { CollectorLine, DigestLine, StatementLine } from './protocol.js';

const PS_PER_MS = 1e9;

/** Passwords in statement text never reach the store. */
export function redact(text: string): string {
  return text
    .replace(
      /\b(IDENTIFIED\s+(?:WITH\s+\S+\s+)?(?:BY|AS)\s+(?:PASSWORD\s+)?)('(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")/gi,
      "$1'***'",
    )
    .replace(
      /\b(PASSWORD\s*(?:=\s*)?(?:PASSWORD\s*)?\(?\s*)('(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")/gi,
      "$1'***'",
    )
    .replace(
      /\b(MASTER_PASSWORD\s*=\s*|SOURCE_PASSWORD\s*=\s*)('(?:[^'\\]|\\.|'')*')/gi,
      "$1'***'",
    );
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

export function createParser(ctx: ParseContext): Parser {
  const textMax = typeof ctx.options['text-max'] === 'number' ? ctx.options['text-max'] : 2048;
  return {
    line(text) {
      if (text.trim() === '') return null;
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
          return null;
        case 'digest':
          if (typeof l.calls !== 'number' || typeof l.text !== 'string')
            return diagnostic('digest line without calls or text');
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
          return statementEvent(l, textMax);
        case 'lost':
          return { kind: 'dropped', count: typeof l.count === 'number' ? l.count : 1 };
        default:
          return diagnostic(`unknown collector line type: ${text.slice(0, 80)}`);
      }
    },
  };
}
