import {
  definePlugin,
  type CheckContext,
  type LeaseChangeState,
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
  MYSQL_LOG_VARIABLES,
  mysqlGlobals,
  mysqlLogSettings,
  mysqlRestore,
  mysqlRows,
  mysqlIdentity,
  mysqlSetGlobal,
  pgAutoConfValue,
  pgIdentity,
  pgRestoreLogging,
  pgSetLogOwner,
  PG_LOG_OWNER,
  resolveServerPath,
  type MysqlVariablesUndo,
  type PgLogUndo,
  type ServerIdentity,
} from './server.js';
import { techniqueFor, workerSpec } from './worker.js';
import { targetConnection, type TargetConnection } from './target.js';
import { view } from './view.js';
import { OPTIONS, type Options } from './options.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };

export const UNDO_KINDS = {
  mysqlVariables: 'mysql-global-variables',
  mysqlConsumers: 'mysql-performance-schema-consumers',
  pgLogging: 'pg-log-min-duration-statement',
  pgExtension: 'pg-stat-statements-extension',
} as const;

/** The per-statement log a technique (or events=true) needs, if any. */
function logKind(
  options: Options,
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
  options: Options,
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
  options: Options,
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

/**
 * Server settings are shared by every tracer on the server (of any node): each change is a lease
 * keyed by the server's own identity and the setting. The first holder journals the original
 * state and changes it; the last to stop restores it.
 */
async function setup(given: Options, ctx: SetupContext): Promise<void> {
  const technique = techniqueFor(given, ctx.technique);
  // A pid/service target names the server; undo() only has the options, so the journal keeps
  // where to connect (never credentials).
  const connection = targetConnection(given, ctx.target);
  const options = connection ? { ...given, ...connection } : given;
  const withConnection = (a: UndoAction): UndoAction =>
    connection ? { ...a, data: { ...(a.data as object), connection } } : a;
  const lease = (
    server: ServerIdentity,
    setting: string,
    change: (journal: (a: UndoAction) => Promise<void>, state: LeaseChangeState) => Promise<void>,
  ) =>
    ctx.lease({
      resource: `${server.id}/${setting}`,
      scope: server.scope,
      change: (journal, state) => change((a) => journal(withConnection(a)), state),
    });
  const log = logKind(options, technique);
  if (engineOf(options) === 'mysql') {
    await withMysql(options, async (conn) => {
      const server = await mysqlIdentity(conn);
      if (technique === 'mysql-digest') {
        await lease(
          server,
          'performance_schema.setup_consumers:global_instrumentation,statements_digest',
          async (journal) => {
            const off = await mysqlRows(
              conn,
              "SELECT NAME FROM performance_schema.setup_consumers WHERE NAME IN ('global_instrumentation', 'statements_digest') AND ENABLED <> 'YES'",
            );
            if (!off.length) return;
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
          },
        );
      }
      if (log === 'slow-log' || log === 'general-log') {
        // log_output is shared by both logs: a lease of its own, so that the slow log stopping
        // does not take FILE away from a general log still running (and the other way round).
        await lease(server, 'log_output:FILE', async (journal) => {
          const current = await mysqlGlobals(conn, ['log_output']);
          const changes = mysqlLogSettings(log, current, '').filter(([k]) => k === 'log_output');
          await applyMysqlChanges(conn, journal, changes, current, [], 'log_output');
        });
        await lease(server, log, async (journal, state) => {
          const current = await mysqlGlobals(conn, [...MYSQL_LOG_VARIABLES, 'datadir']);
          const safeId = `${ctx.taskId}-${ctx.tracerId}`.replace(/[^\w-]/g, '_');
          const fileName = `scalpels-${safeId}-${log}.log`;
          // A tracer of another store (its own agent or SQLite file) holds no lease here: taking
          // its log over would blind it, and each would restore the other into logging everything.
          if (!state.reapplying) refuseForeignLog(log, current, fileName);
          const changes = mysqlLogSettings(log, current, fileName).filter(
            ([k]) => k !== 'log_output',
          );
          await applyMysqlChanges(
            conn,
            journal,
            changes,
            current,
            [resolveServerPath(current.datadir ?? '', fileName)],
            log,
          );
        });
      }
    });
    return;
  }
  await withPg(options, async (client) => {
    const server = await pgIdentity(client);
    if (technique === 'pg-stat-statements') {
      const db = (await client.query('SELECT current_database() AS db')).rows[0] as {
        db: string;
      };
      await lease(server, `database:${db.db}/extension:pg_stat_statements`, async (journal) => {
        const r = await client.query(
          "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS installed",
        );
        if ((r.rows[0] as { installed: boolean }).installed) return;
        await journal({
          kind: UNDO_KINDS.pgExtension,
          data: { database: db.db },
          description: `extension pg_stat_statements did not exist in database ${db.db}`,
        });
        await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      });
    }
    if (log === 'pg-log') {
      await lease(server, 'log_min_duration_statement=0', async (journal, state) => {
        // A tracer of another store holds no lease here (see refuseForeignLog).
        const owner = await pgAutoConfValue(client, PG_LOG_OWNER);
        if (
          !state.reapplying &&
          owner &&
          (await pgAutoConfValue(client, 'log_min_duration_statement')) === '0'
        )
          throw new Error(
            `another scalpels tracer is logging every statement on this server (${PG_LOG_OWNER}=${owner} in postgresql.auto.conf); stop it first, or run scalpels recover on the store that started it if it died`,
          );
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
        await pgSetLogOwner(client, `${ctx.taskId}-${ctx.tracerId}`);
        await client.query('SELECT pg_reload_conf()');
      });
    }
  });
}

/** Refuses a server log that another scalpels tracer (of another store) has switched on. */
function refuseForeignLog(
  log: 'slow-log' | 'general-log',
  current: Record<string, string>,
  fileName: string,
): void {
  const fileVar = log === 'slow-log' ? 'slow_query_log_file' : 'general_log_file';
  const onVar = log === 'slow-log' ? 'slow_query_log' : 'general_log';
  const busy = current[fileVar] ?? '';
  if (/(^|\/)scalpels-[^/]*\.log$/.test(busy) && busy !== fileName && current[onVar] === 'ON')
    throw new Error(
      `another scalpels tracer is logging every statement on this server (${fileVar}=${busy}); stop it first, or run scalpels recover on the store that started it if it died`,
    );
}

/** Journals the old values of the variables about to change (and the files to remove), then sets them. */
async function applyMysqlChanges(
  conn: Awaited<ReturnType<typeof connectMysql>>,
  journal: (a: UndoAction) => Promise<void>,
  changes: [string, string][],
  current: Record<string, string>,
  files: string[],
  what: string,
): Promise<void> {
  if (changes.length === 0) return;
  const data: MysqlVariablesUndo = {
    variables: Object.fromEntries(changes.map(([k]) => [k, current[k]!])),
    files,
  };
  await journal({
    kind: UNDO_KINDS.mysqlVariables,
    data,
    description: `MySQL/MariaDB ${what} settings: ${Object.entries(data.variables)
      .map(([k, v]) => `${k}=${v}`)
      .join(', ')}`,
  });
  for (const [k, v] of changes) await mysqlSetGlobal(conn, k, v);
}

async function undo(action: UndoAction, given: Options): Promise<void> {
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
  apiVersion: '>=1.3.0 <2',
  target: 'optional',
  options: OPTIONS,
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
    check: (ctx: CheckContext<Options>) => checkTechnique(name, ctx),
  })),
  check,
  validate(options) {
    const engine = engineOf(options);
    const technique = options.technique;
    if (technique !== 'auto' && technique.startsWith('pg-') !== (engine === 'postgresql'))
      return `technique ${technique} does not fit engine=${engine}`;
    if (
      options.client?.length &&
      !options.events &&
      !['mysql-slow-log', 'mysql-general-log', 'pg-log'].includes(technique)
    )
      return 'client= narrows per-statement events: add events=true (digest statistics are server-wide)';
    return undefined;
  },
  worker: workerSpec,
  parser: createParser,
  schema,
  report: view,
  setup,
  undo,
});
