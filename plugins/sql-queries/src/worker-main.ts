/**
 * The worker: connects to the database, takes a baseline of the statement statistics, prints
 * `ready`, then every interval prints the increase of each digest and of the statement counters,
 * plus the statements the server logged. On SIGTERM it does one last poll, so the numbers cover
 * the whole traced period, and exits. Output: JSON lines (see protocol.ts).
 */
import { existsSync } from 'node:fs';
import { announceReady } from '@scalpels/core/api';
import type { Connection as MysqlConnection } from 'mysql2/promise';
import type { Client as PgClient } from 'pg';
import { clientThreadMatcher, type ThreadMatcher } from './client.js';
import {
  connectError,
  connectMysql,
  connectPg,
  connectionSettings,
  describe,
} from './connection.js';
import { GeneralLogParser, PgLogParser, SlowLogParser, type LogParser } from './logs.js';
import { fingerprint, type Dialect } from './fingerprint.js';
import { MAX_TEXT, type CollectorLine, type DigestLine, type StatementLine } from './protocol.js';
import { mysqlGlobals, mysqlRows, pgLogFile, resolveServerPath, type Row } from './server.js';
import { FileTail } from './tail.js';
import type { Options } from './options.js';

export interface CollectorConfig {
  options: Options;
  technique: string;
}

const out = (line: CollectorLine): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`);
};
const warn = (msg: string): void => {
  process.stderr.write(`sql-queries: ${msg}\n`);
};

interface Source {
  /** Baseline; returns what `ready` reports. */
  start(): Promise<{ server: string; events?: string }>;
  poll(final: boolean): Promise<void>;
  /** A new connection after the old one failed; the statistics continue from where they were. */
  reconnect(): Promise<void>;
  close(): Promise<void>;
}

const FINAL_WAIT_MS = 2000;

class LogFollower {
  private readonly tail: FileTail;
  constructor(
    path: string,
    private readonly parser: LogParser,
    private readonly keep: (s: StatementLine) => boolean,
  ) {
    this.tail = new FileTail(path);
  }

  /**
   * Reads what the server wrote. At the end of tracing it waits (up to FINAL_WAIT_MS) until the
   * file stops growing and its last entry is whole: a server writes a statement's entry after
   * answering the client, and a large one takes a while.
   */
  async drain(final: boolean): Promise<void> {
    this.read();
    if (final) {
      let size = this.tail.size();
      for (let waited = 0; waited < FINAL_WAIT_MS; waited += 50) {
        await new Promise((r) => setTimeout(r, 50));
        this.read();
        const now = this.tail.size();
        if (now === size && this.tail.partial === 0 && !this.parser.incomplete()) break;
        size = now;
      }
    }
    for (const s of final ? this.parser.flush() : this.parser.flushComplete()) this.emit(s);
    if (this.tail.lostBytes > 0) {
      out({
        t: 'lost',
        count: 1,
        why: `log file ${this.tail.path} was truncated (${this.tail.lostBytes} bytes unread)`,
      });
      this.tail.lostBytes = 0;
    }
  }

  close(): void {
    this.tail.close();
  }

  private read(): void {
    for (const line of this.tail.read()) for (const s of this.parser.push(line)) this.emit(s);
  }

  private emit(s: StatementLine): void {
    if (this.keep(s)) out(bounded(s, s.source === 'pg-log' ? 'postgresql' : 'mysql'));
  }
}

const DIGEST_SQL = `SELECT SCHEMA_NAME, DIGEST, DIGEST_TEXT, COUNT_STAR, SUM_TIMER_WAIT, MAX_TIMER_WAIT, SUM_LOCK_TIME,
  SUM_ERRORS, SUM_WARNINGS, SUM_ROWS_AFFECTED, SUM_ROWS_SENT, SUM_ROWS_EXAMINED, SUM_NO_INDEX_USED, FIRST_SEEN
  FROM performance_schema.events_statements_summary_by_digest`;

class MysqlSource implements Source {
  private conn!: MysqlConnection;
  private ownId = 0;
  private digests = new Map<string, Row>();
  private globalCom: Record<string, bigint> = {};
  private sessionCom: Record<string, bigint> = {};
  private log: LogFollower | undefined;
  private logKind: 'slow-log' | 'general-log' | undefined;
  private logWarned = false;
  private matcher: ThreadMatcher | undefined;

  constructor(private readonly cfg: CollectorConfig) {}

  /** Connects and prepares the session: returns what the server says about itself. */
  private async open(): Promise<Row> {
    const settings = connectionSettings(this.cfg.options);
    try {
      this.conn = await connectMysql(settings);
    } catch (e) {
      throw new Error(connectError(settings, e));
    }
    // A failing connection must not crash the process through an unhandled 'error' event.
    this.conn.on('error', () => undefined);
    const [info] = await mysqlRows(
      this.conn,
      'SELECT CONNECTION_ID() AS id, VERSION() AS v, @@performance_schema AS ps, @@datadir AS datadir',
    );
    this.ownId = Number(info!.id);
    // Keep our own polling out of the server logs (its thread is filtered out anyway): a session
    // threshold of a year, and no general log for this session where the account may say so.
    await this.conn.query('SET SESSION long_query_time = 31536000').catch(() => undefined);
    await this.conn.query('SET SESSION sql_log_off = 1').catch(() => undefined);
    if (this.cfg.technique === 'mysql-digest') {
      if (Number(info!.ps) !== 1)
        throw new Error(`${describe(settings)}: performance_schema is OFF`);
      // Our own polling must not show up in the digests of the workload.
      try {
        await this.conn.query(
          'UPDATE performance_schema.threads SET INSTRUMENTED = ? WHERE PROCESSLIST_ID = CONNECTION_ID()',
          ['NO'],
        );
      } catch (e) {
        warn(
          `cannot exclude the tracer's own statements from the digests: ${(e as Error).message}`,
        );
      }
    }
    return info!;
  }

  async reconnect(): Promise<void> {
    this.conn?.destroy();
    await this.open();
    // Session counters start again with the new connection.
    this.sessionCom = await this.com('SESSION');
  }

  async start(): Promise<{ server: string; events?: string }> {
    const info = await this.open();
    const client = this.cfg.options.client;
    if (client && client.length) this.matcher = await clientThreadMatcher(client, () => this.conn);

    let events: string | undefined;
    const logKind =
      this.cfg.technique === 'mysql-slow-log'
        ? 'slow-log'
        : this.cfg.technique === 'mysql-general-log'
          ? 'general-log'
          : this.cfg.options.events
            ? this.cfg.options['events-source']
            : undefined;
    if (logKind) {
      const v = await mysqlGlobals(this.conn, [
        'slow_query_log',
        'slow_query_log_file',
        'general_log',
        'general_log_file',
        'long_query_time',
        'log_output',
      ]);
      const on = logKind === 'slow-log' ? v.slow_query_log : v.general_log;
      if (on !== 'ON')
        warn(`the ${logKind} is off on the server: no statement events (setup was not run?)`);
      if (logKind === 'slow-log' && Number(v.long_query_time) > 0)
        warn(`long_query_time is ${v.long_query_time}: only slower statements are logged`);
      if (logKind === 'slow-log') {
        // A session copies long_query_time when it connects: older connections (pools of
        // long-running services) keep their threshold and are missing from the events.
        const [old] = await mysqlRows(
          this.conn,
          `SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST
            WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump') AND USER <> 'system user'`,
        );
        if (Number(old!.n) > 0) {
          const message = `${Number(old!.n)} connection(s) opened before tracing (pooled connections of running services) keep their own long_query_time: their statements are not events (digest counts include them). Fix: events-source=general-log (every connection, no durations), or restart the services after the tracer started`;
          warn(message);
          out({ t: 'note', message });
        }
      }
      const file = resolveServerPath(
        String(info.datadir),
        logKind === 'slow-log' ? v.slow_query_log_file! : v.general_log_file!,
      );
      if (!existsSync(file))
        throw new Error(
          `the server's ${logKind} ${file} does not exist here (is the server on another host, or the log off?)`,
        );
      this.logKind = logKind as 'slow-log' | 'general-log';
      const parser = logKind === 'slow-log' ? new SlowLogParser() : new GeneralLogParser();
      this.log = new LogFollower(file, parser, (s) => this.keep(s));
      events = `${logKind} ${file}`;
    }
    await this.pollCounters(false);
    return { server: `${String(info.v)}`, events };
  }

  private keep(s: StatementLine): boolean {
    if (s.thread === this.ownId) return false;
    if (this.matcher && (s.thread === undefined || !this.matcher.matches(s.thread))) return false;
    return true;
  }

  async poll(final: boolean): Promise<void> {
    if (this.matcher) await this.matcher.refresh();
    if (final && this.cfg.technique === 'mysql-digest' && !this.matcher) await this.settleDigests();
    await this.pollCounters(true);
    await this.log?.drain(final);
    if (this.logKind && !this.logWarned) {
      // Someone (an operator, another tool) may switch the log back while we trace.
      const [v] = await mysqlRows(
        this.conn,
        'SELECT @@GLOBAL.slow_query_log AS slow, @@GLOBAL.long_query_time AS lqt, @@GLOBAL.general_log AS general',
      );
      const logging =
        this.logKind === 'slow-log'
          ? Number(v!.slow) === 1 && Number(v!.lqt) === 0
          : Number(v!.general) === 1;
      if (!logging) {
        this.logWarned = true;
        warn(
          `the server's ${this.logKind} settings were changed while tracing: statements are no longer all logged`,
        );
      }
    }
  }

  /**
   * A statement reaches its digest after the client has its answer, later still on a loaded
   * server: before the last read, wait (up to a second) until no other connection is running a
   * statement and the digest totals stopped moving. Statement counters (Com_*) count at a
   * statement's start and need no such wait.
   */
  private async settleDigests(): Promise<void> {
    const state = async (): Promise<{ running: number; total: string }> => {
      const [r] = await mysqlRows(
        this.conn,
        `SELECT (SELECT COUNT(*) FROM information_schema.PROCESSLIST
                 WHERE COMMAND = 'Query' AND ID <> CONNECTION_ID()) AS running,
                (SELECT SUM(COUNT_STAR) FROM performance_schema.events_statements_summary_by_digest) AS total`,
      );
      return { running: Number(r!.running), total: String(r!.total) };
    };
    let last = await state();
    for (let waited = 0; waited < 1000; waited += 50) {
      await new Promise((r) => setTimeout(r, 50));
      const now = await state();
      if (now.running === 0 && now.total === last.total) return;
      last = now;
    }
  }

  private async pollCounters(emit: boolean): Promise<void> {
    const ts = Date.now();
    const global = await this.com('GLOBAL');
    const session = await this.com('SESSION');
    if (emit && !this.matcher) {
      const counters: Record<string, number> = {};
      for (const [k, g] of Object.entries(global)) {
        // A global counter below its last value means the server restarted: it counts from zero.
        const prev = this.globalCom[k] ?? 0n;
        const own = session[k]! - (this.sessionCom[k] ?? 0n);
        const d = (g >= prev ? g - prev : g) - (own >= 0n ? own : 0n);
        if (d !== 0n) counters[k.replace(/^Com_/, '')] = Number(d);
      }
      if (Object.keys(counters).length) out({ t: 'status', ts, counters });
    }
    this.globalCom = global;
    this.sessionCom = session;
    if (this.cfg.technique !== 'mysql-digest' || this.matcher) return;
    const rows = await mysqlRows(this.conn, DIGEST_SQL);
    const next = new Map<string, Row>();
    for (const r of rows) {
      const key = `${r.SCHEMA_NAME ?? ''}\u0000${r.DIGEST ?? ''}`;
      next.set(key, r);
      if (!emit) continue;
      const prev = this.digests.get(key);
      // A row created again (TRUNCATE, eviction) counts from zero.
      const base =
        prev && prev.FIRST_SEEN === r.FIRST_SEEN && big(prev.COUNT_STAR) <= big(r.COUNT_STAR)
          ? prev
          : undefined;
      const d = (col: string): bigint => big(r[col]) - (base ? big(base[col]) : 0n);
      const calls = d('COUNT_STAR');
      if (calls === 0n) continue;
      const line: DigestLine = {
        t: 'digest',
        ts,
        engine: 'mysql',
        digest: r.DIGEST === null ? '' : String(r.DIGEST),
        schema: r.SCHEMA_NAME === null ? '' : String(r.SCHEMA_NAME),
        // The row without a digest collects statements once the digest table is full.
        text:
          r.DIGEST === null
            ? '(statements not digested: events_statements_summary_by_digest is full)'
            : String(r.DIGEST_TEXT ?? ''),
        calls: Number(calls),
        timePs: d('SUM_TIMER_WAIT').toString(),
        lockPs: d('SUM_LOCK_TIME').toString(),
        maxPs: big(r.MAX_TIMER_WAIT).toString(),
        rowsSent: Number(d('SUM_ROWS_SENT')),
        rowsExamined: Number(d('SUM_ROWS_EXAMINED')),
        rowsAffected: Number(d('SUM_ROWS_AFFECTED')),
        errors: Number(d('SUM_ERRORS')),
        warnings: Number(d('SUM_WARNINGS')),
        noIndexUsed: Number(d('SUM_NO_INDEX_USED')),
      };
      out(bounded(line, 'mysql'));
    }
    this.digests = next;
  }

  private async com(scope: 'GLOBAL' | 'SESSION'): Promise<Record<string, bigint>> {
    const rows = await mysqlRows(this.conn, `SHOW ${scope} STATUS LIKE 'Com\\_%'`);
    const res: Record<string, bigint> = {};
    for (const r of rows) res[String(r.Variable_name)] = big(r.Value);
    return res;
  }

  async close(): Promise<void> {
    this.matcher?.close();
    this.log?.close();
    await this.conn?.end().catch(() => undefined);
  }
}

const PGSS_SQL = `SELECT s.userid, s.dbid, s.queryid, s.toplevel, d.datname, s.query, s.calls, s.total_exec_time, s.max_exec_time, s.rows
  FROM pg_stat_statements s LEFT JOIN pg_database d ON d.oid = s.dbid`;
const PGSS_SQL_OLD = `SELECT s.userid, s.dbid, s.queryid, true AS toplevel, d.datname, s.query, s.calls, s.total_time AS total_exec_time, s.max_time AS max_exec_time, s.rows
  FROM pg_stat_statements s LEFT JOIN pg_database d ON d.oid = s.dbid`;

class PgSource implements Source {
  private client!: PgClient;
  private ownPid = 0;
  private sql = PGSS_SQL;
  private hasInfo = false;
  private dealloc = 0;
  private logWarned = false;
  private stats = new Map<string, Record<string, unknown>>();
  private log: LogFollower | undefined;
  private matcher: ThreadMatcher | undefined;

  constructor(private readonly cfg: CollectorConfig) {}

  /** Connects and prepares the session: returns the server version. */
  private async open(): Promise<{ v: string; num: number }> {
    const settings = connectionSettings(this.cfg.options);
    try {
      this.client = await connectPg(settings);
    } catch (e) {
      throw new Error(connectError(settings, e));
    }
    const info = await this.client.query(
      "SELECT pg_backend_pid() AS pid, version() AS v, current_setting('server_version_num')::int AS num",
    );
    const row = info.rows[0] as { pid: number; v: string; num: number };
    this.ownPid = row.pid;
    if (row.num < 130000) this.sql = PGSS_SQL_OLD;
    this.hasInfo = row.num >= 140000;
    if (this.cfg.technique === 'pg-stat-statements') {
      // Our own polling stays out of the statistics when we may say so (superuser setting).
      await this.client
        .query("SET pg_stat_statements.track = 'none'")
        .catch(() => warn('cannot exclude own statements from pg_stat_statements'));
    }
    return row;
  }

  async reconnect(): Promise<void> {
    await this.client?.end().catch(() => undefined);
    await this.open();
  }

  async start(): Promise<{ server: string; events?: string }> {
    const row = await this.open();
    const client = this.cfg.options.client;
    if (client && client.length)
      this.matcher = await clientThreadMatcher(client, () => this.client);
    let events: string | undefined;
    if (this.cfg.technique === 'pg-stat-statements') await this.pollStats(false);
    if (this.cfg.technique === 'pg-log' || this.cfg.options.events) {
      const given = this.cfg.options['log-file'];
      const file = typeof given === 'string' && given !== '' ? given : await pgLogFile(this.client);
      if (!file)
        throw new Error('cannot find the PostgreSQL log file on this host; give log-file=PATH');
      const lmd = await this.client.query(
        "SELECT current_setting('log_min_duration_statement') AS v",
      );
      if ((lmd.rows[0] as { v: string }).v !== '0')
        warn(
          `log_min_duration_statement is ${(lmd.rows[0] as { v: string }).v}: not every statement is logged`,
        );
      this.log = new LogFollower(
        file,
        new PgLogParser(),
        (s) =>
          s.thread !== this.ownPid &&
          (!this.matcher || (s.thread !== undefined && this.matcher.matches(s.thread))),
      );
      events = `pg-log ${file}`;
    }
    return { server: row.v.split(' on ')[0]!, events };
  }

  async poll(final: boolean): Promise<void> {
    if (this.matcher) await this.matcher.refresh();
    if (this.cfg.technique === 'pg-stat-statements') await this.pollStats(true);
    await this.log?.drain(final);
    if (this.log && !this.logWarned) {
      const r = await this.client.query(
        "SELECT current_setting('log_min_duration_statement') AS v",
      );
      if ((r.rows[0] as { v: string }).v !== '0') {
        this.logWarned = true;
        warn(
          'log_min_duration_statement was changed while tracing: statements are no longer all logged',
        );
      }
    }
  }

  private async pollStats(emit: boolean): Promise<void> {
    if (this.matcher) return;
    const ts = Date.now();
    if (this.hasInfo) {
      // Entries evicted when the view is full (pg_stat_statements.max): their calls are gone.
      const info = await this.client.query('SELECT dealloc FROM pg_stat_statements_info');
      const dealloc = Number((info.rows[0] as { dealloc: string }).dealloc);
      if (emit && dealloc > this.dealloc)
        out({
          t: 'lost',
          count: dealloc - this.dealloc,
          why: 'pg_stat_statements evicted entries (pg_stat_statements.max reached)',
        });
      this.dealloc = dealloc;
    }
    const r = await this.client.query(this.sql);
    const next = new Map<string, Record<string, unknown>>();
    for (const row of r.rows as Record<string, unknown>[]) {
      const key = `${row.userid}/${row.dbid}/${row.queryid}/${row.toplevel}`;
      next.set(key, row);
      if (!emit) continue;
      const prev = this.stats.get(key);
      const base = prev && Number(prev.calls) <= Number(row.calls) ? prev : undefined;
      const calls = Number(row.calls) - (base ? Number(base.calls) : 0);
      if (calls === 0) continue;
      out(
        bounded<DigestLine>(
          {
            t: 'digest',
            ts,
            engine: 'postgresql',
            digest: String(row.queryid ?? ''),
            schema: String(row.datname ?? ''),
            text: String(row.query ?? ''),
            calls,
            timeMs: Number(row.total_exec_time) - (base ? Number(base.total_exec_time) : 0),
            maxMs: Number(row.max_exec_time),
            rowsSent: Number(row.rows) - (base ? Number(base.rows) : 0),
          },
          'postgresql',
        ),
      );
    }
    this.stats = next;
  }

  async close(): Promise<void> {
    this.matcher?.close();
    this.log?.close();
    await this.client?.end().catch(() => undefined);
  }
}

/** A line whose text fits in a stdout line, with the whole text's fingerprint when it was cut. */
function bounded<T extends { text: string; fingerprint?: string }>(line: T, dialect: Dialect): T {
  if (line.text.length <= MAX_TEXT) return line;
  return {
    ...line,
    text: line.text.slice(0, MAX_TEXT),
    fingerprint: fingerprint(line.text, dialect),
  };
}

function big(v: unknown): bigint {
  if (v === null || v === undefined || v === '') return 0n;
  return BigInt(typeof v === 'number' ? Math.round(v) : String(v).split('.')[0]!);
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.env.SCALPELS_SQL_QUERIES_CONFIG ?? '{}') as CollectorConfig;
  const source: Source = cfg.technique.startsWith('pg-') ? new PgSource(cfg) : new MysqlSource(cfg);
  let stopping = false;
  let wake: (() => void) | undefined;
  const stop = (): void => {
    stopping = true;
    wake?.();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const { server, events } = await source.start();
  out({
    t: 'ready',
    engine: cfg.technique.startsWith('pg-') ? 'postgresql' : 'mysql',
    technique: cfg.technique,
    server,
    events,
    ts: Date.now(),
  });
  announceReady();
  const interval = cfg.options.interval;
  let failing = false;
  for (;;) {
    if (!stopping)
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, interval);
      });
    wake = undefined;
    // Decided before the poll: a stop requested while a poll runs gets a poll of its own after
    // it, so the statements of the traced period's end are always read.
    const final = stopping;
    // Servers account a statement (digest, slow log) just after answering the client: give the
    // statements that ended right before the stop request the time to land.
    if (final) await new Promise((r) => setTimeout(r, 100));
    try {
      await source.poll(final);
      if (failing) warn('connected again; counting continues');
      failing = false;
    } catch (e) {
      // The server restarted or the connection broke: the server keeps counting meanwhile, so
      // reconnecting and going on loses nothing of the digest statistics.
      if (!failing) warn(`${(e as Error).message}; reconnecting every ${interval} ms`);
      failing = true;
      const reconnected = await source.reconnect().then(
        () => true,
        () => false,
      );
      if (reconnected && final) await source.poll(true);
      else if (final)
        throw new Error(`cannot reach the server for the last poll: ${(e as Error).message}`);
    }
    if (final) break;
  }
  await source.close();
}

/** Exits once everything written to stdout has reached the pipe: process.exit() would cut it off. */
function exitAfterOutput(code: number): void {
  process.stdout.write('', () => process.exit(code));
}

main().then(
  () => exitAfterOutput(0),
  (e: unknown) => {
    warn((e as Error).message ?? String(e));
    exitAfterOutput(1);
  },
);
