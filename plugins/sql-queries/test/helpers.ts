/** Shared by the live tests and the testdata recorder: setup/undo as the core runs them, workloads, server counters. */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OptionValues, UndoAction } from '@scalpels/core';
import mysql from 'mysql2/promise';
import pg from 'pg';
import plugin from '../src/index.js';

export const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..');
export const target = { kind: 'none' as const, pids: [], description: 'system-wide' };

/** Runs the plugin's setup with an in-memory journal; returns the journal for undo. */
export async function runSetup(
  options: OptionValues,
  taskId: string,
  technique?: string,
): Promise<UndoAction[]> {
  const journal: UndoAction[] = [];
  await plugin.setup!(options, {
    target,
    taskId,
    tracerId: 1,
    technique,
    runtimeDir: '/tmp',
    pluginDir,
    journal: async (a) => void journal.push(structuredClone(a)),
  });
  return journal;
}

/** Undoes in reverse order, as the core does. */
export async function runUndo(
  journal: readonly UndoAction[],
  options: OptionValues,
): Promise<void> {
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

const LOCK = '/tmp/scalpels-sql-queries-tests.lock';

/**
 * Test files that change server-wide settings or compare server-wide counters run one at a time
 * (vitest runs files in parallel): a lock directory with the holder's pid, taken over when stale.
 */
export async function serverLock(): Promise<() => void> {
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'pid'), String(process.pid));
      return () => rmSync(LOCK, { recursive: true, force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder = 0;
      try {
        holder = Number(readFileSync(join(LOCK, 'pid'), 'utf8'));
      } catch {
        // being created right now
      }
      if (holder > 0 && !existsSync(`/proc/${holder}`))
        rmSync(LOCK, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 100));
    }
  }
}
