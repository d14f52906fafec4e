/**
 * Connection settings and clients. Credentials come from an option file (`defaults-file`, MySQL
 * `[client]` syntax), the environment (MYSQL_PWD, PGPASSWORD, PGPASSFILE) or socket authentication;
 * never from an option, so they never reach a worker's command line.
 */
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { nodeConfigPath, nodeSettings, readTrustedFile, UserError } from '@scalpels/core';
import type { Connection as MysqlConnection } from 'mysql2/promise';
import type { Client as PgClient } from 'pg';
import type { Options } from './options.js';

export type Engine = 'mysql' | 'postgresql';

export interface ConnectionSettings {
  engine: Engine;
  host?: string;
  port?: number;
  socket?: string;
  user: string;
  database?: string;
  /** Read from the option file or the environment; never printed. */
  password?: string;
}

const MYSQL_SOCKETS = [
  '/run/mysqld/mysqld.sock',
  '/var/run/mysqld/mysqld.sock',
  '/var/lib/mysql/mysql.sock',
  '/tmp/mysql.sock',
];
const PG_SOCKET_DIRS = ['/var/run/postgresql', '/run/postgresql', '/tmp'];

/**
 * Reads `[client]` (and `[mysql]`, `[client-server]`) keys of a MySQL option file. Only a file root
 * protected (readTrustedFile: root's, 0600/0640, no symlink; as root inside /etc/scalpels/): a
 * request must not make root read /etc/shadow or another user's file.
 */
export function readOptionFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  let section = '';
  const text = readTrustedFile(path, { label: 'sql-queries: option "defaults-file"' });
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[([^\]]+)\]$/.exec(line);
    if (head) {
      section = head[1]!.trim().toLowerCase();
      continue;
    }
    if (!['client', 'mysql', 'client-server', 'client-mariadb'].includes(section)) continue;
    const kv = /^([\w-]+)\s*(?:=\s*(.*))?$/.exec(line);
    if (!kv) continue;
    let value = (kv[2] ?? '').trim();
    if (/^(['"]).*\1$/.test(value)) value = value.slice(1, -1);
    out[kv[1]!.replace(/-/g, '_').toLowerCase()] = value;
  }
  return out;
}

export function engineOf(options: Options): Engine {
  return options.engine === 'postgresql' ? 'postgresql' : 'mysql';
}

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/**
 * A login with a password (from a protected option file, the environment, or PostgreSQL's
 * ~/.pgpass) goes only to this host's server: a request must not point `host` or `socket` at a
 * server of its own to collect it. Other servers and sockets are listed in the node
 * configuration (`"servers"` of the `"sql-queries"` section); the known sockets outside /tmp
 * need no listing.
 */
function checkCredentialTarget(host: string | undefined, socket: string | undefined): void {
  const servers = nodeSettings('sql-queries').servers;
  const listed = (v: string): boolean => Array.isArray(servers) && servers.includes(v);
  const where = `"servers" of the "sql-queries" section of ${nodeConfigPath()}`;
  if (
    host !== undefined &&
    !host.startsWith('/') &&
    !LOCAL_HOSTS.has(host.toLowerCase()) &&
    !listed(host)
  )
    throw new UserError(
      `sql-queries: option "host" refused: a password goes only to this host's server or to one listed in ${where}`,
    );
  const path = socket ?? (host?.startsWith('/') ? host : undefined);
  const known = [...MYSQL_SOCKETS, ...PG_SOCKET_DIRS].filter((p) => !p.startsWith('/tmp'));
  if (path !== undefined && !known.includes(path) && !listed(path))
    throw new UserError(
      `sql-queries: option "socket" refused: a password goes only to a known server socket (${known.join(', ')}) or to one listed in ${where}`,
    );
}

/** Resolves where and as whom to connect: options first, then the option file, the environment, defaults. */
export function connectionSettings(
  options: Options,
  env: NodeJS.ProcessEnv = process.env,
): ConnectionSettings {
  const engine = engineOf(options);
  const str = (
    k: 'host' | 'socket' | 'user' | 'database' | 'defaults-file',
  ): string | undefined => {
    const v = options[k];
    return v !== undefined && v !== '' ? v : undefined;
  };
  const num = (k: 'port'): number | undefined => options[k];
  if (engine === 'mysql') {
    const file = str('defaults-file') ? readOptionFile(str('defaults-file')!) : {};
    const host = str('host') ?? file.host ?? env.MYSQL_HOST;
    const port =
      num('port') ??
      (file.port ? Number(file.port) : undefined) ??
      (env.MYSQL_TCP_PORT ? Number(env.MYSQL_TCP_PORT) : undefined);
    const password = file.password ?? env.MYSQL_PWD;
    if (password !== undefined) checkCredentialTarget(str('host'), str('socket'));
    let socket = str('socket') ?? file.socket ?? env.MYSQL_UNIX_PORT;
    // Like the mysql client: no host (or localhost) means the unix socket.
    if (!socket && (!host || host === 'localhost') && port === undefined)
      socket = MYSQL_SOCKETS.find((s) => existsSync(s));
    return {
      engine,
      host: socket ? undefined : (host ?? '127.0.0.1'),
      port: socket ? undefined : (port ?? 3306),
      socket,
      user: str('user') ?? file.user ?? env.MYSQL_USER ?? userInfo().username,
      database: str('database') ?? file.database,
      password,
    };
  }
  // node-postgres reads ~/.pgpass when no password is given: any login may carry one.
  checkCredentialTarget(str('host'), str('socket'));
  const host = str('host') ?? str('socket') ?? env.PGHOST;
  const socketDir = PG_SOCKET_DIRS.find((d) => existsSync(d));
  return {
    engine,
    host:
      host ??
      (socketDir && existsSync(`${socketDir}/.s.PGSQL.${num('port') ?? 5432}`)
        ? socketDir
        : '127.0.0.1'),
    port: num('port') ?? (env.PGPORT ? Number(env.PGPORT) : 5432),
    user: str('user') ?? env.PGUSER ?? 'postgres',
    database: str('database') ?? env.PGDATABASE ?? 'postgres',
    password: env.PGPASSWORD,
  };
}

/** `root@/run/mysqld/mysqld.sock`, `postgres@127.0.0.1:5432/postgres`: for messages, never with a password. */
export function describe(c: ConnectionSettings): string {
  const where = c.socket ?? `${c.host}:${c.port}`;
  const name = c.engine === 'mysql' ? 'MySQL/MariaDB' : 'PostgreSQL';
  return `${name} ${c.user}@${where}${c.database ? `/${c.database}` : ''}`;
}

export async function connectMysql(c: ConnectionSettings): Promise<MysqlConnection> {
  const mysql = await import('mysql2/promise');
  return mysql.createConnection({
    host: c.host,
    port: c.port,
    socketPath: c.socket,
    user: c.user,
    password: c.password,
    database: c.database,
    connectTimeout: 5000,
    // 64-bit picosecond timers and counters stay exact as strings.
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: true,
  });
}

export async function connectPg(c: ConnectionSettings): Promise<PgClient> {
  const pg = await import('pg');
  const client = new pg.default.Client({
    host: c.host,
    port: c.port,
    user: c.user,
    database: c.database,
    password: c.password,
    connectionTimeoutMillis: 5000,
    application_name: 'scalpels-sql-queries',
  });
  // A server that goes away later must not crash the process through an unhandled 'error' event.
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/**
 * One line for doctor and run: what went wrong connecting, without a stack trace. `withFix` adds
 * how to fix it, for callers that have no separate hint to show.
 */
export function connectError(c: ConnectionSettings, e: unknown, withFix = true): string {
  const err = e as { code?: string; message?: string };
  const what = describe(c);
  const msg = (err.message ?? String(e)).split('\n')[0]!;
  switch (err.code) {
    case 'ER_ACCESS_DENIED_ERROR':
    case 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR':
    case '28P01':
    case '28000':
      return `${what}: authentication failed (${msg})${withFix ? `; give the password in defaults-file or ${c.engine === 'mysql' ? 'MYSQL_PWD' : 'PGPASSWORD/.pgpass'}` : ''}`;
    case 'ECONNREFUSED':
    case 'ENOENT':
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
      return `${what}: server unreachable (${msg})`;
    case 'ER_DBACCESS_DENIED_ERROR':
    case 'ER_BAD_DB_ERROR':
    case '3D000':
      return `${what}: ${msg}`;
    default:
      return `${what}: ${msg}`;
  }
}
