/**
 * What the plugin asks of and changes on the database server: probes for check(), the settings
 * setup() changes (journaled first) and undo() restores.
 */
import { existsSync, readlinkSync, rmSync } from 'node:fs';
import { basename, isAbsolute, join } from 'node:path';
import type { Connection as MysqlConnection } from 'mysql2/promise';
import type { Client as PgClient } from 'pg';

export const PERFORMANCE_SCHEMA_FIX =
  'add "performance_schema = ON" under [mysqld] in my.cnf and restart the server (it cannot be enabled at runtime)';
export const PG_STAT_STATEMENTS_FIX =
  "add shared_preload_libraries = 'pg_stat_statements' to postgresql.conf, restart PostgreSQL, then CREATE EXTENSION pg_stat_statements";

export type Row = Record<string, string | number | null>;

export async function mysqlRows(
  conn: MysqlConnection,
  sql: string,
  params: unknown[] = [],
): Promise<Row[]> {
  const [rows] = await conn.query(sql, params);
  return rows as Row[];
}

/** Global variables that exist on this server, by name. */
export async function mysqlGlobals(
  conn: MysqlConnection,
  names: readonly string[],
): Promise<Record<string, string>> {
  const rows = await mysqlRows(
    conn,
    `SHOW GLOBAL VARIABLES WHERE Variable_name IN (${names.map(() => '?').join(', ')})`,
    [...names],
  );
  const out: Record<string, string> = {};
  for (const r of rows) out[String(r.Variable_name)] = String(r.Value ?? '');
  return out;
}

/** A literal for SET GLOBAL: numbers bare (long_query_time refuses a string), the rest quoted. */
function settingLiteral(conn: MysqlConnection, value: string): string {
  return /^-?\d+(\.\d+)?$/.test(value) ? value : conn.escape(value);
}

/** The server variables a tracer may change (and reads before it does). */
export const MYSQL_LOG_VARIABLES = [
  'slow_query_log',
  'slow_query_log_file',
  'long_query_time',
  'log_output',
  'general_log',
  'general_log_file',
  'min_examined_row_limit',
  'log_slow_rate_limit',
  'log_slow_min_examined_row_limit',
] as const;
const SETTABLE: ReadonlySet<string> = new Set(MYSQL_LOG_VARIABLES);

export async function mysqlSetGlobal(
  conn: MysqlConnection,
  name: string,
  value: string,
): Promise<void> {
  if (!SETTABLE.has(name)) throw new Error(`refusing to set unexpected variable ${name}`);
  await conn.query(`SET GLOBAL ${name} = ${settingLiteral(conn, value)}`);
}

/** The log settings a log technique needs, in the order they are applied (logging switched on last). */
export function mysqlLogSettings(
  kind: 'slow-log' | 'general-log',
  current: Record<string, string>,
  fileName: string,
): [string, string][] {
  const want: [string, string][] = [];
  const output = (current.log_output ?? 'FILE').toUpperCase();
  const withFile = output.includes('FILE')
    ? output
    : output === 'NONE' || output === ''
      ? 'FILE'
      : `${output},FILE`;
  if (kind === 'slow-log') {
    want.push(
      ['slow_query_log_file', fileName],
      ['log_output', withFile],
      ['long_query_time', '0'],
    );
    for (const limit of ['min_examined_row_limit', 'log_slow_min_examined_row_limit'])
      if (current[limit] !== undefined) want.push([limit, '0']);
    if (current.log_slow_rate_limit !== undefined) want.push(['log_slow_rate_limit', '1']);
    want.push(['slow_query_log', 'ON']);
  } else {
    want.push(['general_log_file', fileName], ['log_output', withFile], ['general_log', 'ON']);
  }
  return want.filter(([k, v]) => current[k] !== undefined && !sameSetting(current[k]!, v));
}

function sameSetting(a: string, b: string): boolean {
  if (/^-?[\d.]+$/.test(a) && /^-?[\d.]+$/.test(b)) return Number(a) === Number(b);
  return a.toUpperCase() === b.toUpperCase();
}

/** Journal data of the MySQL global variables a tracer changed. */
export interface MysqlVariablesUndo {
  variables: Record<string, string>;
  /** Log files the tracer had the server write, removed on undo (they hold every statement). */
  files: string[];
}

export async function mysqlRestore(conn: MysqlConnection, data: MysqlVariablesUndo): Promise<void> {
  // Logging off first, so nothing is written to a file about to be switched back.
  const order = Object.keys(data.variables).sort((a, b) => rank(a) - rank(b));
  for (const name of order) await mysqlSetGlobal(conn, name, data.variables[name]!);
  for (const f of data.files) if (basename(f).startsWith('scalpels-')) rmSync(f, { force: true });
}

function rank(name: string): number {
  return name === 'slow_query_log' || name === 'general_log' ? 0 : 1;
}

export function resolveServerPath(datadir: string, file: string): string {
  return isAbsolute(file) ? file : join(datadir, file);
}

/** Whether this account may change global variables (SUPER or SYSTEM_VARIABLES_ADMIN): a same-value SET. */
export async function mysqlCanSetGlobals(conn: MysqlConnection): Promise<string | undefined> {
  try {
    await conn.query('SET GLOBAL long_query_time = @@GLOBAL.long_query_time');
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

export interface PgLogUndo {
  /** The value in postgresql.auto.conf before, or null when ALTER SYSTEM had not set it. */
  autoConf: string | null;
}

export async function pgAutoConfValue(client: PgClient, name: string): Promise<string | null> {
  const r = await client.query(
    "SELECT setting FROM pg_file_settings WHERE name = $1 AND sourcefile LIKE '%postgresql.auto.conf' ORDER BY seqno DESC LIMIT 1",
    [name],
  );
  return r.rows.length ? String(r.rows[0].setting) : null;
}

/**
 * A custom setting beside `log_min_duration_statement = 0` in postgresql.auto.conf naming the
 * tracer that set it: what MariaDB's `scalpels-*` log file name says there, so that a tracer of
 * another store sees whose the setting is.
 */
export const PG_LOG_OWNER = 'scalpels.log_owner';

/** Sets (or with null removes) the owner mark in postgresql.auto.conf; takes effect on reload. */
export async function pgSetLogOwner(client: PgClient, owner: string | null): Promise<void> {
  // ALTER SYSTEM accepts a custom setting only once the session knows it (PostgreSQL 15).
  await client.query(`SET ${PG_LOG_OWNER} = ${client.escapeLiteral(owner ?? '')}`);
  await client.query(
    owner === null
      ? `ALTER SYSTEM RESET ${PG_LOG_OWNER}`
      : `ALTER SYSTEM SET ${PG_LOG_OWNER} = ${client.escapeLiteral(owner)}`,
  );
}

export async function pgRestoreLogging(client: PgClient, data: PgLogUndo): Promise<void> {
  if (data.autoConf === null) await client.query('ALTER SYSTEM RESET log_min_duration_statement');
  else
    await client.query(
      `ALTER SYSTEM SET log_min_duration_statement = ${client.escapeLiteral(data.autoConf)}`,
    );
  await pgSetLogOwner(client, null);
  await client.query('SELECT pg_reload_conf()');
}

/** The file the server logs to, when it is on this host: the logging collector's file or its stderr. */
export async function pgLogFile(client: PgClient): Promise<string | undefined> {
  const r = await client.query(
    "SELECT pg_backend_pid() AS pid, current_setting('logging_collector') AS collector, current_setting('data_directory') AS datadir",
  );
  const row = r.rows[0] as { pid: number; collector: string; datadir: string };
  if (row.collector === 'on') {
    const f = await client.query("SELECT pg_current_logfile('stderr') AS f");
    const file = (f.rows[0] as { f: string | null }).f;
    return file ? resolveServerPath(row.datadir, file) : undefined;
  }
  // A backend inherits the postmaster's stderr: where it points is the log.
  try {
    const target = readlinkSync(`/proc/${row.pid}/fd/2`);
    return target.startsWith('/') && existsSync(target) ? target : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The server itself, for lease keys: the same for every node and connection path that reaches
 * it. A server known only by how this node reaches it is node-scoped.
 */
export interface ServerIdentity {
  id: string;
  scope: 'node' | 'shared';
}

export async function mysqlIdentity(conn: MysqlConnection): Promise<ServerIdentity> {
  const [row] = await mysqlRows(conn, 'SELECT @@hostname AS h, @@port AS p, @@socket AS s');
  const port = Number(row?.p ?? 0);
  return port > 0
    ? { id: `mysql:${String(row?.h)}:${port}`, scope: 'shared' }
    : { id: `mysql:socket:${String(row?.s)}`, scope: 'node' };
}

export async function pgIdentity(client: PgClient): Promise<ServerIdentity> {
  const port = String(
    (await client.query("SELECT current_setting('port') AS p")).rows[0]?.p ?? '5432',
  );
  try {
    // The cluster's identifier (from initdb) names it whatever address a node uses.
    const r = await client.query('SELECT system_identifier::text AS id FROM pg_control_system()');
    const id = (r.rows[0] as { id?: string } | undefined)?.id;
    if (id) return { id: `postgresql:${id}:${port}`, scope: 'shared' };
  } catch {
    // Not allowed to read it: fall back to what this node sees.
  }
  const dir = String(
    (await client.query("SELECT current_setting('data_directory', true) AS d")).rows[0]?.d ?? '',
  );
  return { id: `postgresql:${dir || 'unknown'}:${port}`, scope: 'node' };
}
