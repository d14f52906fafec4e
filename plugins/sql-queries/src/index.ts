import {
  definePlugin,
  type OptionValues,
  type SetupContext,
  type UndoAction,
} from '@scalpels/core';
import { createRequire } from 'node:module';
import { check, checkTechnique, MYSQL_TECHNIQUES, PG_TECHNIQUES } from './checks.js';
import {
  connectError,
  connectMysql,
  connectPg,
  connectionSettings,
  engineOf,
} from './connection.js';
import { createParser } from './parser.js';
import { schema } from './schema.js';
import {
  mysqlGlobals,
  mysqlLogSettings,
  mysqlRestore,
  mysqlRows,
  mysqlSetGlobal,
  pgAutoConfValue,
  pgRestoreLogging,
  resolveServerPath,
  type MysqlVariablesUndo,
  type PgLogUndo,
} from './server.js';
import { techniqueFor, workerSpec } from './worker.js';
import { targetConnection, type TargetConnection } from './target.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };

export const UNDO_KINDS = {
  mysqlVariables: 'mysql-global-variables',
  mysqlConsumers: 'mysql-performance-schema-consumers',
  pgLogging: 'pg-log-min-duration-statement',
  pgExtension: 'pg-stat-statements-extension',
} as const;

/** The per-statement log a technique (or events=true) needs, if any. */
function logKind(
  options: OptionValues,
  technique: string,
): 'slow-log' | 'general-log' | 'pg-log' | undefined {
  if (technique === 'mysql-slow-log') return 'slow-log';
  if (technique === 'mysql-general-log') return 'general-log';
  if (technique === 'pg-log') return 'pg-log';
  if (!options.events) return undefined;
  if (technique.startsWith('pg-')) return 'pg-log';
  return options['events-source'] === 'general-log' ? 'general-log' : 'slow-log';
}

async function withMysql<T>(
  options: OptionValues,
  fn: (conn: Awaited<ReturnType<typeof connectMysql>>) => Promise<T>,
): Promise<T> {
  const settings = connectionSettings(options);
  let conn;
  try {
    conn = await connectMysql(settings);
  } catch (e) {
    throw new Error(connectError(settings, e));
  }
  try {
    return await fn(conn);
  } finally {
    await conn.end().catch(() => undefined);
  }
}

async function withPg<T>(
  options: OptionValues,
  fn: (client: Awaited<ReturnType<typeof connectPg>>) => Promise<T>,
): Promise<T> {
  const settings = connectionSettings(options);
  let client;
  try {
    client = await connectPg(settings);
  } catch (e) {
    throw new Error(connectError(settings, e));
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function setup(given: OptionValues, ctx: SetupContext): Promise<void> {
  const technique = techniqueFor(given, ctx.technique);
  // A pid/service target names the server; undo() only has the options, so the journal keeps
  // where to connect (never credentials).
  const connection = targetConnection(given, ctx.target);
  const options = connection ? { ...given, ...connection } : given;
  const journal = (a: UndoAction): Promise<void> =>
    ctx.journal(connection ? { ...a, data: { ...(a.data as object), connection } } : a);
  const log = logKind(options, technique);
  if (engineOf(options) === 'mysql') {
    await withMysql(options, async (conn) => {
      if (technique === 'mysql-digest') {
        const off = await mysqlRows(
          conn,
          "SELECT NAME FROM performance_schema.setup_consumers WHERE NAME IN ('global_instrumentation', 'statements_digest') AND ENABLED <> 'YES'",
        );
        if (off.length) {
          const names = off.map((r) => String(r.NAME));
          await journal({
            kind: UNDO_KINDS.mysqlConsumers,
            data: { consumers: names },
            description: `performance_schema consumers ${names.join(', ')} were off`,
          });
          await conn.query(
            "UPDATE performance_schema.setup_consumers SET ENABLED = 'YES' WHERE NAME IN (?)",
            [names],
          );
        }
      }
      if (log === 'slow-log' || log === 'general-log') {
        const current = await mysqlGlobals(conn, [
          'slow_query_log',
          'slow_query_log_file',
          'long_query_time',
          'log_output',
          'general_log',
          'general_log_file',
          'min_examined_row_limit',
          'log_slow_rate_limit',
          'log_slow_min_examined_row_limit',
          'datadir',
        ]);
        const safeId = `${ctx.taskId}-${ctx.tracerId}`.replace(/[^\w-]/g, '_');
        const fileName = `scalpels-${safeId}-${log}.log`;
        // Two tracers logging at once would restore each other's settings: the one stopping last
        // would leave the server logging everything. One at a time.
        const fileVar = log === 'slow-log' ? 'slow_query_log_file' : 'general_log_file';
        const onVar = log === 'slow-log' ? 'slow_query_log' : 'general_log';
        const busy = current[fileVar] ?? '';
        if (/(^|\/)scalpels-[^/]*\.log$/.test(busy) && busy !== fileName && current[onVar] === 'ON')
          throw new Error(
            `another scalpels tracer is logging every statement on this server (${fileVar}=${busy}); stop it first, or run scalpels recover if it died`,
          );
        const changes = mysqlLogSettings(log, current, fileName);
        if (changes.length === 0) return;
        const data: MysqlVariablesUndo = {
          variables: Object.fromEntries(changes.map(([k]) => [k, current[k]!])),
          files: [resolveServerPath(current.datadir ?? '', fileName)],
        };
        await journal({
          kind: UNDO_KINDS.mysqlVariables,
          data,
          description: `MySQL/MariaDB ${log} settings: ${Object.entries(data.variables)
            .map(([k, v]) => `${k}=${v}`)
            .join(', ')}`,
        });
        for (const [k, v] of changes) await mysqlSetGlobal(conn, k, v);
      }
    });
    return;
  }
  await withPg(options, async (client) => {
    if (technique === 'pg-stat-statements') {
      const r = await client.query(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS installed",
      );
      if (!(r.rows[0] as { installed: boolean }).installed) {
        const db = (await client.query('SELECT current_database() AS db')).rows[0] as {
          db: string;
        };
        await journal({
          kind: UNDO_KINDS.pgExtension,
          data: { database: db.db },
          description: `extension pg_stat_statements did not exist in database ${db.db}`,
        });
        await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      }
    }
    if (log === 'pg-log') {
      const cur = await client.query("SELECT current_setting('log_min_duration_statement') AS v");
      if ((cur.rows[0] as { v: string }).v === '0') return;
      const data: PgLogUndo = {
        autoConf: await pgAutoConfValue(client, 'log_min_duration_statement'),
      };
      await journal({
        kind: UNDO_KINDS.pgLogging,
        data,
        description: `PostgreSQL log_min_duration_statement in postgresql.auto.conf: ${data.autoConf ?? '(not set)'}`,
      });
      await client.query('ALTER SYSTEM SET log_min_duration_statement = 0');
      await client.query('SELECT pg_reload_conf()');
    }
  });
}

async function undo(action: UndoAction, given: OptionValues): Promise<void> {
  const connection = (action.data as { connection?: TargetConnection } | null)?.connection;
  const options = connection ? { ...given, ...connection } : given;
  switch (action.kind) {
    case UNDO_KINDS.mysqlVariables:
      return withMysql(options, (conn) => mysqlRestore(conn, action.data as MysqlVariablesUndo));
    case UNDO_KINDS.mysqlConsumers: {
      const { consumers } = action.data as { consumers: string[] };
      return withMysql(options, async (conn) => {
        await conn.query(
          "UPDATE performance_schema.setup_consumers SET ENABLED = 'NO' WHERE NAME IN (?)",
          [consumers],
        );
      });
    }
    case UNDO_KINDS.pgLogging:
      return withPg(options, (client) => pgRestoreLogging(client, action.data as PgLogUndo));
    case UNDO_KINDS.pgExtension: {
      const { database } = action.data as { database: string };
      return withPg({ ...options, database }, async (client) => {
        await client.query('DROP EXTENSION IF EXISTS pg_stat_statements');
      });
    }
    default:
      throw new Error(`sql-queries: unknown undo action ${action.kind}`);
  }
}

const TECHNIQUE_DESCRIPTIONS: Record<string, string> = {
  'mysql-digest':
    'performance_schema events_statements_summary_by_digest deltas every interval (exact counts and times)',
  'mysql-slow-log':
    'slow log with long_query_time=0: every statement with its microsecond duration',
  'mysql-general-log': 'general log: every statement, no durations',
  'pg-stat-statements': 'pg_stat_statements deltas every interval (exact counts and times)',
  'pg-log': 'PostgreSQL log with log_min_duration_statement=0: every statement with its duration',
};

export default definePlugin({
  name: 'sql-queries',
  version: pkg.version,
  description:
    'SQL statements of MariaDB/MySQL and PostgreSQL: exact per-digest counts and times, fingerprinted like pt-query-digest',
  apiVersion: '>=1.0.0 <2',
  target: 'optional',
  options: {
    engine: {
      type: 'string',
      choices: ['mysql', 'postgresql'],
      default: 'mysql',
      description: 'Database server kind (MariaDB counts as mysql)',
    },
    technique: {
      type: 'string',
      choices: ['auto', ...MYSQL_TECHNIQUES, ...PG_TECHNIQUES],
      default: 'auto',
      description: 'Force a technique instead of the first that works here',
    },
    interval: {
      type: 'duration',
      default: '1s',
      min: '100ms',
      max: '1h',
      description: 'How often statistics are read',
    },
    events: {
      type: 'boolean',
      default: false,
      description:
        'Also record every statement as an event (server log: slow log, general log or PostgreSQL log)',
    },
    'events-source': {
      type: 'string',
      choices: ['slow-log', 'general-log'],
      default: 'slow-log',
      description:
        'MySQL/MariaDB log for events=true: slow log with long_query_time=0 (durations) or general log (none)',
    },
    host: {
      type: 'string',
      description: 'Server host (default: the local unix socket, else 127.0.0.1)',
    },
    port: { type: 'port', description: 'Server port (default 3306 / 5432)' },
    socket: {
      type: 'path',
      description: 'Unix socket of MySQL/MariaDB (or socket directory of PostgreSQL)',
    },
    user: {
      type: 'string',
      description:
        'User (default: from defaults-file, MYSQL_USER/PGUSER, else login name / postgres)',
    },
    database: {
      type: 'string',
      description:
        'Database to connect to (PostgreSQL: where pg_stat_statements lives; default postgres)',
    },
    'defaults-file': {
      type: 'path',
      mustExist: true,
      description:
        'MySQL option file with a [client] section (user, password, host, port, socket); passwords only here or in MYSQL_PWD/PGPASSWORD',
    },
    'log-file': {
      type: 'path',
      description: 'PostgreSQL log file to follow (default: found from the server)',
    },
    client: {
      type: 'list',
      description:
        'Only statements of the TCP connections of these client processes (pids or names, with descendants); needs events',
    },
    'text-max': {
      type: 'integer',
      default: 2048,
      min: 0,
      max: 1_000_000,
      description: 'Statement text kept per event, in characters',
      unit: 'chars',
    },
  },
  requires: [
    {
      kind: 'service',
      what: 'MariaDB/MySQL with performance_schema=ON, or PostgreSQL with pg_stat_statements',
      why: 'exact per-digest statistics',
    },
    {
      kind: 'privilege',
      what: 'SELECT on performance_schema; SUPER/SYSTEM_VARIABLES_ADMIN (MySQL) or superuser (PostgreSQL) for log techniques and events',
    },
    { kind: 'file', what: 'the server log on this host', why: 'per-statement events' },
  ],
  techniques: [...MYSQL_TECHNIQUES, ...PG_TECHNIQUES].map((name) => ({
    name,
    description: TECHNIQUE_DESCRIPTIONS[name]!,
    check: (ctx) => checkTechnique(name, ctx),
  })),
  check,
  validate(options) {
    const engine = engineOf(options);
    const technique = String(options.technique ?? 'auto');
    if (technique !== 'auto' && technique.startsWith('pg-') !== (engine === 'postgresql'))
      return `technique ${technique} does not fit engine=${engine}`;
    const client = options.client as readonly string[] | undefined;
    if (
      client?.length &&
      !options.events &&
      !['mysql-slow-log', 'mysql-general-log', 'pg-log'].includes(technique)
    )
      return 'client= narrows per-statement events: add events=true (digest statistics are server-wide)';
    return undefined;
  },
  worker: workerSpec,
  parser: createParser,
  schema,
  setup,
  undo,
});
