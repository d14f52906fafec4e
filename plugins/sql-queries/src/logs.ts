/**
 * Incremental parsers of the server logs that give one entry per statement: the MySQL/MariaDB slow
 * log (with long_query_time=0), the general log, and the PostgreSQL log with
 * log_min_duration_statement=0. Lines go in one by one; an entry is complete when the next one
 * starts, or when the caller flushes after reading all the file has for now (the servers write
 * each entry with one write).
 */
import type { StatementLine } from './protocol.js';

/** The lines MySQL/MariaDB write when they open a log file. */
function isLogHeader(line: string): boolean {
  return /^\S+, Version: .* started with:$|^Tcp port: \d+ +Unix socket: |^Time\s+Id Command\s+Argument$/.test(
    line,
  );
}

export interface LogParser {
  /** One line of the log without its newline; returns the entries completed by it. */
  push(line: string): StatementLine[];
  /** Ends the pending entry, if any. */
  flush(): StatementLine[];
  /** Ends the pending entry only if it looks whole (the rest of it may not be written yet). */
  flushComplete(): StatementLine[];
  /** Whether an entry has begun whose statement is not complete yet. */
  incomplete(): boolean;
}

/** MariaDB: `# User@Host: u[u] @ host [ip]` then `# Thread_id: N  Schema: s ...`. MySQL 8: `... []  Id: N`. */
export class SlowLogParser implements LogParser {
  private cur: Partial<StatementLine> & { lines?: string[] } = {};
  private inEntry = false;

  push(line: string): StatementLine[] {
    if (line.startsWith('# Time:') || isLogHeader(line)) return this.flush();
    if (line.startsWith('# User@Host:')) {
      const out = this.flush();
      this.inEntry = true;
      this.cur = { lines: [] };
      const m =
        /^# User@Host: ([^[]*)\[([^\]]*)\] @ *([^ []*) *\[([^\]]*)\](?:\s+Id:\s*(\d+))?/.exec(line);
      if (m) {
        this.cur.user = m[2] || m[1]!.trim();
        this.cur.host = m[3] || m[4] || undefined;
        if (m[5]) this.cur.thread = Number(m[5]);
      }
      return out;
    }
    if (!this.inEntry) return [];
    const cur = this.cur;
    if (line.startsWith('# ') && cur.lines!.length === 0) {
      for (const [, k, v] of line.slice(2).matchAll(/(\w+):\s*(\S*)/g)) {
        switch (k) {
          case 'Thread_id':
            cur.thread = Number(v);
            break;
          case 'Schema':
            if (v && !v.endsWith(':')) cur.schema = v;
            break;
          case 'Query_time':
            cur.durationMs = Number(v) * 1000;
            break;
          case 'Lock_time':
            cur.lockMs = Number(v) * 1000;
            break;
          case 'Rows_sent':
            cur.rowsSent = Number(v);
            break;
          case 'Rows_examined':
            cur.rowsExamined = Number(v);
            break;
          case 'Rows_affected':
            cur.rowsAffected = Number(v);
            break;
        }
      }
      return [];
    }
    const ts = /^SET timestamp=(\d+);$/.exec(line);
    if (ts && cur.lines!.length === 0) {
      cur.ts = Number(ts[1]) * 1000;
      return [];
    }
    const use = /^use `?([^`;]*)`?;$/.exec(line);
    if (use && cur.lines!.length === 0 && cur.ts === undefined) {
      cur.schema = use[1];
      return [];
    }
    cur.lines!.push(line);
    return [];
  }

  flushComplete(): StatementLine[] {
    return this.incomplete() ? [] : this.flush();
  }

  incomplete(): boolean {
    if (!this.inEntry) return false;
    const last = (this.cur.lines ?? []).findLast((l) => l.trim() !== '');
    return !last?.trimEnd().endsWith(';');
  }

  flush(): StatementLine[] {
    const cur = this.cur;
    this.cur = {};
    if (!this.inEntry) return [];
    this.inEntry = false;
    const text = (cur.lines ?? []).join('\n').replace(/;\s*$/, '');
    if (text === '') return [];
    const { lines: _lines, ...rest } = cur;
    return [{ ...rest, t: 'statement', source: 'slow-log', ts: cur.ts ?? Date.now(), text }];
  }
}

/**
 * General log, MariaDB `YYMMDD HH:MM:SS\t  Id Command\tArgument` (the time only when it changed)
 * and MySQL 8 `2024-01-01T12:00:00.123456Z\t  Id Command\tArgument`. Only `Query` and `Execute`
 * are statements; `Connect` and `Init DB` tell who and which schema.
 */
export class GeneralLogParser implements LogParser {
  private pending: StatementLine | undefined;
  private lastTs = Date.now();
  private readonly threads = new Map<number, { user?: string; host?: string; schema?: string }>();

  push(line: string): StatementLine[] {
    const m =
      /^(\d{6} +\d{1,2}:\d\d:\d\d|\d{4}-\d\d-\d\dT[\d:.]+Z?)?\t+ *(\d+) ([A-Za-z][A-Za-z ]*?)\t(.*)$/.exec(
        line,
      );
    if (!m) {
      // The header the server writes when it opens the file, or a line of a multi-line statement.
      if (isLogHeader(line)) return this.flush();
      if (this.pending) this.pending.text += `\n${line}`;
      return [];
    }
    const out = this.flush();
    if (m[1]) this.lastTs = parseGeneralTime(m[1]) ?? this.lastTs;
    const thread = Number(m[2]);
    const command = m[3]!;
    const arg = m[4]!;
    const info = this.threads.get(thread) ?? {};
    if (command === 'Connect') {
      const c = /^(\S+?)@(\S+) (?:on|as \S+ on) ?(\S*)/.exec(arg);
      this.threads.set(thread, c ? { user: c[1], host: c[2], schema: c[3] || undefined } : {});
    } else if (command === 'Init DB') {
      this.threads.set(thread, { ...info, schema: arg });
    } else if (command === 'Quit') {
      this.threads.delete(thread);
    } else if (command === 'Query' || command === 'Execute') {
      this.pending = {
        t: 'statement',
        source: 'general-log',
        ts: this.lastTs,
        thread,
        ...info,
        text: arg,
      };
    }
    return out;
  }

  /** The server writes a general log entry with one write: what is there is whole. */
  flushComplete(): StatementLine[] {
    return this.flush();
  }

  incomplete(): boolean {
    return false;
  }

  flush(): StatementLine[] {
    const p = this.pending;
    this.pending = undefined;
    if (!p) return [];
    p.text = p.text.trimEnd();
    const use = /^use\s+`?([^`;\s]+)`?\s*;?$/i.exec(p.text);
    if (use && p.thread !== undefined)
      this.threads.set(p.thread, { ...this.threads.get(p.thread), schema: use[1] });
    return [p];
  }
}

function parseGeneralTime(s: string): number | undefined {
  if (s.includes('T')) {
    const t = Date.parse(s.endsWith('Z') ? s : `${s}Z`);
    return Number.isNaN(t) ? undefined : t;
  }
  const m = /^(\d\d)(\d\d)(\d\d) +(\d{1,2}):(\d\d):(\d\d)$/.exec(s);
  if (!m) return undefined;
  // The server writes its local time; this collector runs on the same host.
  return new Date(
    2000 + Number(m[1]),
    Number(m[2]) - 1,
    Number(m[3]),
    Number(m[4]),
    Number(m[5]),
    Number(m[6]),
  ).getTime();
}

/**
 * PostgreSQL log with log_min_duration_statement=0, any log_line_prefix that contains `[%p]` or
 * `%p` before the level: `2024-01-01 12:00:00.123 UTC [4242] user@db LOG:  duration: 0.101 ms
 * statement: SELECT 1`. Extended-protocol `parse` and `bind` steps are not statements (their
 * `execute` is); continuation lines start with a tab.
 */
export class PgLogParser implements LogParser {
  private pending: StatementLine | undefined;

  push(line: string): StatementLine[] {
    if (line.startsWith('\t')) {
      if (this.pending) this.pending.text += `\n${line.slice(1)}`;
      return [];
    }
    const out = this.flush();
    const m =
      /^(.*?)LOG: {2}duration: ([\d.]+) ms {2}(statement|execute [^:]*|parse [^:]*|bind [^:]*): (.*)$/.exec(
        line,
      );
    if (!m || !(m[3] === 'statement' || m[3]!.startsWith('execute'))) return out;
    const prefix = m[1]!;
    const durationMs = Number(m[2]);
    const tsm = /(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)(?: ([A-Z]{3,5}|[-+]\d\d))?/.exec(
      prefix,
    );
    let end = Date.now();
    if (tsm) {
      const zone =
        tsm[2] === undefined || tsm[2] === 'UTC' || tsm[2] === 'GMT'
          ? 'Z'
          : /^[-+]\d\d$/.test(tsm[2])
            ? `${tsm[2]}:00`
            : '';
      const t = Date.parse(`${tsm[1]!.replace(' ', 'T')}${zone}`);
      if (!Number.isNaN(t)) end = t;
    }
    const pid = /\[(\d+)\]/.exec(prefix);
    const who = /\s([^\s@[\]]*)@(\S*)\s*$/.exec(prefix);
    this.pending = {
      t: 'statement',
      source: 'pg-log',
      // The line is written when the statement ends.
      ts: Math.round(end - durationMs),
      durationMs,
      text: m[4]!,
      ...(pid ? { thread: Number(pid[1]) } : {}),
      ...(who && who[1] ? { user: who[1] } : {}),
      ...(who && who[2] ? { schema: who[2] } : {}),
    };
    return out;
  }

  /** Continuation lines may still come; the next entry or the end of tracing completes it. */
  flushComplete(): StatementLine[] {
    return [];
  }

  incomplete(): boolean {
    return false;
  }

  flush(): StatementLine[] {
    const p = this.pending;
    this.pending = undefined;
    if (p) p.text = p.text.trimEnd().replace(/;$/, '');
    return p ? [p] : [];
  }
}
