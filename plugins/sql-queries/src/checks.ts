/** What check() finds out about the server, once per check, and what each technique makes of it. */
import { existsSync } from 'node:fs';
import type { CheckContext, CheckResult } from '@scalpels/core';
import {
  connectError,
  connectMysql,
  connectPg,
  connectionSettings,
  describe,
  engineOf,
  type ConnectionSettings,
} from './connection.js';
import {
  PERFORMANCE_SCHEMA_FIX,
  PG_STAT_STATEMENTS_FIX,
  mysqlCanSetGlobals,
  mysqlRows,
  pgLogFile,
} from './server.js';
import type { Options } from './options.js';

export const MYSQL_TECHNIQUES = ['mysql-digest', 'mysql-slow-log', 'mysql-general-log'] as const;
export const PG_TECHNIQUES = ['pg-stat-statements', 'pg-log'] as const;

export interface MysqlFacts {
  engine: 'mysql';
  where: string;
  error?: string;
  /** Authentication failed: fixable with credentials. */
  authError?: boolean;
  version?: string;
  performanceSchema?: boolean;
  digestReadError?: string;
  consumersOff?: string[];
  consumersUpdateError?: string;
  setGlobalsError?: string;
  local?: boolean;
  /** Client connections open now: the slow log of events=true will not see their statements. */
  openConnections?: number;
}

export interface PgFacts {
  engine: 'postgresql';
  where: string;
  error?: string;
  authError?: boolean;
  version?: string;
  superuser?: boolean;
  preloaded?: boolean;
  installed?: boolean;
  logFile?: string;
}

type Facts = MysqlFacts | PgFacts;

const cache = new WeakMap<CheckContext<Options>, Promise<Facts>>();

/** Facts of one check context, gathered once (the techniques' checks share them). */
export function facts(ctx: CheckContext<Options>): Promise<Facts> {
  let f = cache.get(ctx);
  if (!f) {
    f = gather(ctx.options);
    cache.set(ctx, f);
  }
  return f;
}

function isLocal(c: ConnectionSettings): boolean {
  return (
    c.socket !== undefined ||
    c.host === undefined ||
    /^(localhost|127\.\d+\.\d+\.\d+|::1|\/.*)$/.test(c.host)
  );
}

async function gather(options: Options): Promise<Facts> {
  let c: ConnectionSettings;
  try {
    c = connectionSettings(options);
  } catch (e) {
    return { engine: engineOf(options), where: 'database', error: (e as Error).message } as Facts;
  }
  const where = describe(c);
  const isAuth = (e: unknown): boolean =>
    ['ER_ACCESS_DENIED_ERROR', 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR', '28P01', '28000'].includes(
      String((e as { code?: string }).code),
    );
  if (c.engine === 'mysql') {
    const f: MysqlFacts = { engine: 'mysql', where, local: isLocal(c) };
    let conn;
    try {
      conn = await connectMysql(c);
    } catch (e) {
      return { ...f, error: connectError(c, e, false), authError: isAuth(e) };
    }
    try {
      const [info] = await mysqlRows(conn, 'SELECT VERSION() AS v, @@performance_schema AS ps');
      f.version = String(info!.v);
      f.performanceSchema = Number(info!.ps) === 1;
      if (f.performanceSchema) {
        try {
          await mysqlRows(
            conn,
            'SELECT DIGEST FROM performance_schema.events_statements_summary_by_digest LIMIT 1',
          );
          const rows = await mysqlRows(
            conn,
            "SELECT NAME, ENABLED FROM performance_schema.setup_consumers WHERE NAME IN ('global_instrumentation', 'statements_digest')",
          );
          f.consumersOff = rows.filter((r) => r.ENABLED !== 'YES').map((r) => String(r.NAME));
          if (f.consumersOff.length) {
            try {
              await conn.query(
                "UPDATE performance_schema.setup_consumers SET ENABLED = ENABLED WHERE NAME = 'statements_digest'",
              );
            } catch (e) {
              f.consumersUpdateError = (e as Error).message;
            }
          }
        } catch (e) {
          f.digestReadError = (e as Error).message;
        }
      }
      f.setGlobalsError = await mysqlCanSetGlobals(conn);
      const [open] = await mysqlRows(
        conn,
        `SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST
          WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump') AND USER <> 'system user'`,
      ).catch(() => [undefined]);
      if (open) f.openConnections = Number(open.n);
    } catch (e) {
      f.error = `${where}: ${(e as Error).message}`;
    } finally {
      await conn.end().catch(() => undefined);
    }
    return f;
  }
  const f: PgFacts = { engine: 'postgresql', where };
  let client;
  try {
    client = await connectPg(c);
  } catch (e) {
    return { ...f, error: connectError(c, e, false), authError: isAuth(e) };
  }
  try {
    const r = await client.query(
      `SELECT version() AS v, current_setting('is_superuser') AS su, current_setting('shared_preload_libraries') AS pre,
        EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS installed`,
    );
    const row = r.rows[0] as { v: string; su: string; pre: string; installed: boolean };
    f.version = row.v.split(' on ')[0];
    f.superuser = row.su === 'on';
    f.preloaded = row.pre
      .split(',')
      .map((s) => s.trim())
      .includes('pg_stat_statements');
    f.installed = row.installed;
    const given = options['log-file'];
    f.logFile =
      typeof given === 'string' && given !== ''
        ? given
        : isLocal(c)
          ? await pgLogFile(client)
          : undefined;
  } catch (e) {
    f.error = `${where}: ${(e as Error).message}`;
  } finally {
    await client.end().catch(() => undefined);
  }
  return f;
}

function connectProblem(f: Facts): CheckResult | undefined {
  if (!f.error) return undefined;
  if (f.authError)
    return {
      status: 'fixable',
      detail: f.error,
      hint:
        f.engine === 'mysql'
          ? 'set defaults-file=FILE (a [client] section with user/password) or MYSQL_PWD'
          : 'set PGPASSWORD or a ~/.pgpass entry',
    };
  return { status: 'unavailable', detail: f.error };
}

const GLOBALS_PRIVILEGE = (f: MysqlFacts): CheckResult => ({
  status: 'fixable',
  detail: `${f.where}: cannot change global variables for the server log (${f.setGlobalsError})`,
  hint: 'GRANT SUPER (MariaDB) or SYSTEM_VARIABLES_ADMIN (MySQL 8) ON *.* TO the tracer user',
});

function mysqlLogCheck(f: MysqlFacts, kind: 'slow-log' | 'general-log'): CheckResult | undefined {
  if (f.setGlobalsError) return GLOBALS_PRIVILEGE(f);
  if (!f.local)
    return {
      status: 'unavailable',
      detail: `${f.where}: the server is not on this host, its ${kind} cannot be read`,
    };
  return undefined;
}

export async function checkTechnique(
  name: string,
  ctx: CheckContext<Options>,
): Promise<CheckResult> {
  const options = ctx.options;
  const engine = engineOf(options);
  const forEngine =
    engine === 'mysql'
      ? (MYSQL_TECHNIQUES as readonly string[])
      : (PG_TECHNIQUES as readonly string[]);
  if (!forEngine.includes(name))
    return {
      status: 'unavailable',
      detail: `${name} is not a technique for engine=${engine}`,
      technique: name,
    };
  if (ctx.depth === 'quick') return quick(options, name);
  const f = await facts(ctx);
  const bad = connectProblem(f);
  if (bad) return { ...bad, technique: name };
  const result = f.engine === 'mysql' ? checkMysql(name, f, options) : checkPg(name, f, options);
  return { ...result, technique: name };
}

export function checkMysql(name: string, f: MysqlFacts, options: Options): CheckResult {
  const eventsSource = options['events-source'] === 'general-log' ? 'general-log' : 'slow-log';
  if (name === 'mysql-digest') {
    if (!f.performanceSchema)
      return {
        status: 'fixable',
        detail: `${f.where} (${f.version}): performance_schema is OFF`,
        hint: PERFORMANCE_SCHEMA_FIX,
      };
    if (f.digestReadError)
      return {
        status: 'fixable',
        detail: `${f.where}: cannot read performance_schema digests (${f.digestReadError})`,
        hint: 'GRANT SELECT ON performance_schema.* TO the tracer user',
      };
    if (f.consumersOff?.length && f.consumersUpdateError)
      return {
        status: 'fixable',
        detail: `${f.where}: consumers ${f.consumersOff.join(', ')} are off and cannot be switched on (${f.consumersUpdateError})`,
        hint: 'GRANT UPDATE ON performance_schema.setup_consumers TO the tracer user',
      };
    if (options.events) {
      const logBad = mysqlLogCheck(f, eventsSource);
      if (logBad) return logBad;
    }
    // Said by doctor too: events from the slow log miss the pooled connections open now.
    const pooled =
      eventsSource === 'slow-log' && (f.openConnections ?? 0) > 0
        ? `; note: events=true with the slow log would miss the statements of the ${f.openConnections} connection(s) open now (pooled connections keep their long_query_time): use events-source=general-log for them`
        : '';
    return {
      status: 'ok',
      detail: `${f.where} (${f.version}): performance_schema statement digests, exact counts and times${options.events ? `; statement events from the ${eventsSource}` : ''}${pooled}`,
    };
  }
  const kind = name === 'mysql-slow-log' ? 'slow-log' : 'general-log';
  const logBad = mysqlLogCheck(f, kind);
  if (logBad) return logBad;
  const psNote = f.performanceSchema
    ? ''
    : `; performance_schema is OFF, for exact digests: ${PERFORMANCE_SCHEMA_FIX}`;
  return {
    status: 'ok',
    detail:
      kind === 'slow-log'
        ? `${f.where} (${f.version}): every statement from the slow log with long_query_time=0 (microsecond durations)${psNote}`
        : `${f.where} (${f.version}): every statement from the general log (no durations)${psNote}`,
  };
}

export function checkPg(name: string, f: PgFacts, options: Options): CheckResult {
  const logCheck = (): CheckResult | undefined => {
    if (!f.superuser)
      return {
        status: 'fixable',
        detail: `${f.where}: log_min_duration_statement needs ALTER SYSTEM, which needs a superuser`,
        hint: 'connect as a superuser (user=postgres)',
      };
    if (!f.logFile)
      return {
        status: 'unavailable',
        detail: `${f.where}: the server log is not a file on this host; give log-file=PATH`,
      };
    return undefined;
  };
  if (name === 'pg-stat-statements') {
    if (!f.preloaded)
      return {
        status: 'fixable',
        detail: `${f.where} (${f.version}): pg_stat_statements is not loaded`,
        hint: PG_STAT_STATEMENTS_FIX,
      };
    if (!f.installed && !f.superuser)
      return {
        status: 'fixable',
        detail: `${f.where}: the pg_stat_statements extension is not created in this database`,
        hint: 'CREATE EXTENSION pg_stat_statements (as a superuser)',
      };
    if (options.events) {
      const bad = logCheck();
      if (bad) return bad;
    }
    return {
      status: 'ok',
      detail: `${f.where} (${f.version}): pg_stat_statements deltas${f.installed ? '' : ' (extension created at start, dropped at stop)'}${options.events ? `; statement events from ${f.logFile}` : ''}`,
    };
  }
  const bad = logCheck();
  if (bad) return bad;
  const note = f.preloaded
    ? ''
    : `; pg_stat_statements is not loaded, for digests: ${PG_STAT_STATEMENTS_FIX}`;
  return {
    status: 'ok',
    detail: `${f.where} (${f.version}): every statement from ${f.logFile} with log_min_duration_statement=0${note}`,
  };
}

/** No network, no process: is there something to connect to? */
function quick(options: Options, technique: string): CheckResult {
  let c: ConnectionSettings;
  try {
    c = connectionSettings(options);
  } catch (e) {
    return { status: 'unavailable', detail: (e as Error).message, technique };
  }
  if (c.socket && !existsSync(c.socket))
    return { status: 'unavailable', detail: `${describe(c)}: no socket file`, technique };
  return {
    status: 'ok',
    detail: `${describe(c)} (not connected: quick check; doctor connects)`,
    technique,
  };
}

/** Walks the engine's techniques (or the forced one): the first that works, else the most fixable problem. */
export async function check(ctx: CheckContext<Options>): Promise<CheckResult> {
  const forced = ctx.options.technique;
  if (forced !== 'auto') return checkTechnique(forced, ctx);
  const chain = engineOf(ctx.options) === 'mysql' ? MYSQL_TECHNIQUES : PG_TECHNIQUES;
  // Which technique works needs a connection: the quick check does not name one.
  if (ctx.depth === 'quick') return { ...quick(ctx.options, chain[0]!), technique: undefined };
  if (ctx.depth === 'full') {
    const bad = connectProblem(await facts(ctx));
    if (bad) return { ...bad, technique: chain[0] };
  }
  const results: CheckResult[] = [];
  // In order of preference; the general log (no durations) only when nothing better works.
  for (const name of chain) {
    const r = await checkTechnique(name, ctx);
    // A fallback that works still carries the better technique's fix.
    if (r.status === 'ok') return results[0]?.hint ? { ...r, hint: results[0].hint } : r;
    results.push(r);
  }
  return results.find((r) => r.status === 'fixable') ?? results[0]!;
}
