/** Shared by the live tests and the testdata recorder: setup/undo as the core runs them, workloads, server counters. */
import {
  execFileSync,
  spawn,
  spawnSync,
  type ChildProcess,
  type StdioOptions,
} from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { UndoAction } from '@scalpels/core';
import {
  cliEntry,
  machineTestLock,
  memorySetupContext,
  runCli,
  runCliOk,
  type CliResult,
} from '@scalpels/core/testing';
import mysql from 'mysql2/promise';
import pg from 'pg';
import plugin from '../src/index.js';
import { pgLogFile } from '../src/server.js';
import type { Options } from '../src/options.js';

export const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..');
export const target = { kind: 'none' as const, pids: [], description: 'system-wide' };

/** Runs the plugin's setup with an in-memory journal; returns the journal for undo. */
export async function runSetup(
  options: Options,
  taskId: string,
  technique?: string,
): Promise<UndoAction[]> {
  const journal: UndoAction[] = [];
  await plugin.setup!(
    options,
    memorySetupContext(
      { target, taskId, tracerId: 1, technique, runtimeDir: '/tmp', pluginDir },
      journal,
    ),
  );
  return journal;
}

/** Undoes in reverse order, as the core does. */
export async function runUndo(journal: readonly UndoAction[], options: Options): Promise<void> {
  for (const a of [...journal].reverse()) await plugin.undo!(a, options);
}

export const MYSQL_SOCKET = '/run/mysqld/mysqld.sock';

export function mysqlUp(): boolean {
  return spawnSync('mariadb-admin', ['-uroot', 'ping'], { stdio: 'ignore' }).status === 0;
}

export function pgUp(): boolean {
  return (
    spawnSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-Atc', 'select 1'], {
      stdio: 'ignore',
    }).status === 0
  );
}

export async function mysqlQuery(
  sql: string,
  params: unknown[] = [],
): Promise<Record<string, unknown>[]> {
  const c = await mysql.createConnection({
    socketPath: MYSQL_SOCKET,
    user: 'root',
    supportBigNumbers: true,
    bigNumberStrings: true,
  });
  try {
    const [rows] = await c.query(sql, params);
    return rows as Record<string, unknown>[];
  } finally {
    await c.end();
  }
}

export async function pgQuery(
  sql: string,
  params: unknown[] = [],
): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: 'postgres' });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as Record<string, unknown>[];
  } finally {
    await c.end();
  }
}

export async function mysqlGlobalStatus(names: string[]): Promise<Record<string, number>> {
  const rows = await mysqlQuery(
    `SHOW GLOBAL STATUS WHERE Variable_name IN (${names.map(() => '?').join(',')})`,
    names,
  );
  return Object.fromEntries(rows.map((r) => [String(r.Variable_name), Number(r.Value)]));
}

export async function mysqlVariables(names: string[]): Promise<Record<string, string>> {
  const rows = await mysqlQuery(
    `SHOW GLOBAL VARIABLES WHERE Variable_name IN (${names.map(() => '?').join(',')})`,
    names,
  );
  return Object.fromEntries(rows.map((r) => [String(r.Variable_name), String(r.Value)]));
}

/** COUNT_STAR per DIGEST_TEXT of one schema, read by an independent connection. */
export async function digestCounts(schema: string): Promise<Record<string, number>> {
  const rows = await mysqlQuery(
    'SELECT DIGEST_TEXT, COUNT_STAR FROM performance_schema.events_statements_summary_by_digest WHERE SCHEMA_NAME = ?',
    [schema],
  );
  return Object.fromEntries(rows.map((r) => [String(r.DIGEST_TEXT).trim(), Number(r.COUNT_STAR)]));
}

export const LOG_VARIABLES = [
  'slow_query_log',
  'slow_query_log_file',
  'long_query_time',
  'log_output',
  'general_log',
  'general_log_file',
  'min_examined_row_limit',
  'log_slow_rate_limit',
];

/**
 * The workload of known shape, run by the real `mariadb` client in one session: K inserts with
 * different literals, K selects by id with different literals, one select with an IN list.
 */
export function mysqlWorkload(schema: string, k: number): string {
  const run = (args: string[], sql: string[]): string =>
    execFileSync('mariadb', ['-uroot', '-N', ...args], {
      input: sql.join('\n'),
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'ignore'],
    });
  run([], [`DROP DATABASE IF EXISTS ${schema};`, `CREATE DATABASE ${schema};`]);
  // The schema as an argument, not `use`: the client's `use` command runs a SELECT DATABASE() of its own.
  const sql = ['CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(32));'];
  for (let i = 1; i <= k; i++) sql.push(`INSERT INTO t VALUES (${i}, 'value ${i}');`);
  for (let i = 1; i <= k; i++) sql.push(`SELECT * FROM t WHERE id = ${i};`);
  sql.push(`SELECT v FROM t WHERE id IN (1, 2, 3);`);
  return run([schema], sql);
}

export function pgWorkload(table: string, k: number): void {
  const sql = [
    `DROP TABLE IF EXISTS ${table};`,
    `CREATE TABLE ${table} (id int PRIMARY KEY, v text);`,
  ];
  for (let i = 1; i <= k; i++) sql.push(`INSERT INTO ${table} VALUES (${i}, 'value ${i}');`);
  for (let i = 1; i <= k; i++) sql.push(`SELECT * FROM ${table} WHERE id = ${i};`);
  sql.push(`DROP TABLE ${table};`);
  execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-qAt', '-v', 'ON_ERROR_STOP=1'], {
    input: sql.join('\n'),
    stdio: ['pipe', 'ignore', 'pipe'],
  });
}

/** Drops the schemas this test process created (`scalpels_t_<case>_<pid>`). */
export async function dropTestSchemas(): Promise<void> {
  const rows = await mysqlQuery('SHOW DATABASES');
  for (const r of rows) {
    const name = String(Object.values(r)[0]);
    if (new RegExp(`^scalpels_t_\\w+_${process.pid}$`).test(name))
      await mysqlQuery(`DROP DATABASE \`${name}\``);
  }
}

/** The machine-wide lock name of tests that change or compare a database server's global state. */
export const DATABASE_SERVERS_LOCK = 'database-servers';

/**
 * Test files that change server-wide settings or compare server-wide counters run one at a time
 * (vitest runs files in parallel; test/openstack takes the same lock for its SQL tracer).
 */
export const serverLock = (): Promise<() => void> =>
  machineTestLock(DATABASE_SERVERS_LOCK, 590_000);

/** The `scalpels` entry script; undefined when it is not built (gate on it with capability()). */
export const cli = cliEntry();

/** A task's report as `scalpels report --format json` prints it: the parts the CLI tests read. */
export interface CliReport {
  format: string;
  tracers: CliReportTracer[];
  summary: {
    sections: {
      tracer: string;
      tables: {
        title: string;
        columns: { label: string }[];
        rows: { key: string[]; values: (number | null)[] }[];
      }[];
    }[];
  };
}

export interface CliReportTracer {
  tracer: string;
  status: string;
  error?: string | null;
  technique?: string;
  parseErrors: number;
  series: { name: string; labels: Record<string, string>; sum?: number }[];
  events: {
    count: number;
    top: { key: string; count: number; totalMs: number; meanMs: number; p95Ms: number }[];
  };
}

/** The `sql.calls` of a fingerprint in a tracer's report, summed over the series with `labels`. */
export const sqlCalls = (
  t: CliReportTracer,
  fingerprint: string,
  labels: Record<string, string> = {},
): number =>
  t.series
    .filter(
      (s) =>
        s.name === 'sql.calls' &&
        s.labels.fingerprint === fingerprint &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    )
    .reduce((a, s) => a + (s.sum ?? 0), 0);

export interface CliScratch {
  /** The data folder (XDG_DATA_HOME: the default store is in it); `remove()` deletes it. */
  readonly dir: string;
  /** `scalpels ARGS...` run to completion: exit code and output, never a throw for an exit code. */
  run(args: readonly string[], timeoutMs?: number): Promise<CliResult>;
  /** `scalpels ARGS...`: its stdout; throws with its stderr when it exits non-zero. */
  ok(args: readonly string[], timeoutMs?: number): Promise<string>;
  /** `scalpels report TASK --format json` (`--store`, `--top` when given), parsed. */
  report(task: string, opts?: { store?: string; top?: number }): Promise<CliReport>;
  /** A long-lived `scalpels ARGS...` the test itself signals, kills or waits for. */
  start(args: readonly string[], stdio: StdioOptions): ChildProcess;
  remove(): void;
}

/** `scalpels` runs on a scratch data folder of their own, without colours. */
export function cliScratch(prefix: string): CliScratch {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const env = { XDG_DATA_HOME: dir, NO_COLOR: '1' };
  const ok = (args: readonly string[], timeoutMs?: number): Promise<string> =>
    runCliOk(args, { cli, env, timeoutMs });
  return {
    dir,
    run: (args, timeoutMs) => runCli(args, { cli, env, timeoutMs }),
    ok,
    report: async (task, { store, top } = {}) => {
      const args = ['report', task, '--format', 'json'];
      if (top !== undefined) args.push('--top', String(top));
      if (store !== undefined) args.push('--store', store);
      return JSON.parse(await ok(args)) as CliReport;
    },
    start: (args, stdio) => {
      if (!cli) throw new Error('the scalpels CLI is not built');
      return spawn(process.execPath, [cli, ...args], { env: { ...process.env, ...env }, stdio });
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** How many times `text` occurs in a server log file (0 while it does not exist). */
export function occurrences(file: string, text: string): number {
  let body: string;
  try {
    body = readFileSync(file, 'utf8');
  } catch {
    return 0;
  }
  return body.split(text).length - 1;
}

/** The log file the tracer's setup had MariaDB write (from its journal). */
export function journaledLogFile(journal: readonly UndoAction[]): string {
  const file = journal
    .flatMap((a) => (a.data as { files?: string[] } | null)?.files ?? [])
    .find((f) => f.includes('scalpels-'));
  if (!file) throw new Error('setup journaled no log file');
  return file;
}

/** The file PostgreSQL logs to on this host (the logging collector's, or the postmaster's stderr). */
export async function pgServerLogFile(): Promise<string> {
  const c = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: 'postgres' });
  await c.connect();
  try {
    const file = await pgLogFile(c);
    if (!file) throw new Error('PostgreSQL logs to no file on this host');
    return file;
  } finally {
    await c.end();
  }
}
