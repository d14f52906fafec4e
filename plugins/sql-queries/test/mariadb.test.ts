/**
 * Live tests against this machine's MariaDB: a workload of known shape through the real worker,
 * compared with the server's own counters read independently; server settings restored after stop
 * and after a SIGKILLed worker.
 */
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capability, runWorker, waitFor } from '@scalpels/core/testing';
import { validateOptions, type Sample, type TraceEvent, type TraceRecord } from '@scalpels/core';
import plugin from '../src/index.js';
import {
  LOG_VARIABLES,
  digestCounts,
  dropTestSchemas,
  mysqlGlobalStatus,
  mysqlQuery,
  mysqlUp,
  mysqlVariables,
  mysqlWorkload,
  pluginDir,
  journaledLogFile,
  occurrences,
  runSetup,
  runUndo,
  target,
  serverLock,
} from './helpers.js';

let releaseServer: (() => void) | undefined;
beforeAll(async () => {
  releaseServer = await serverLock();
}, 600_000);
afterAll(() => releaseServer?.());

const up = capability(
  'mariadb',
  mysqlUp(),
  'no MariaDB answering as root on /run/mysqld/mysqld.sock',
);
const ps = up && Number((await mysqlQuery('SELECT @@performance_schema AS ps'))[0]!.ps) === 1;
const digestOk = capability(
  'mariadb-performance-schema',
  ps,
  'performance_schema is OFF: run plugins/sql-queries/test/ci-enable-statement-stats.sh',
);

const K = 40;

afterAll(async () => {
  if (up) await dropTestSchemas();
});
const INSERT = 'insert into t values(?+)';
const SELECT = 'select * from t where id = ?';

function sumBy(
  records: TraceRecord[],
  series: string,
  where: (l: Record<string, string>) => boolean,
): number {
  return records
    .filter(
      (r): r is Sample =>
        r.kind === 'sample' &&
        r.series === series &&
        where((r.labels ?? {}) as Record<string, string>),
    )
    .reduce((a, r) => a + r.value, 0);
}

function events(records: TraceRecord[]): TraceEvent[] {
  return records.filter((r): r is TraceEvent => r.kind === 'event');
}

describe.runIf(up && digestOk)('mysql-digest against MariaDB', () => {
  it('counts a known workload exactly as the server does, in one row per statement shape', async () => {
    const schema = `scalpels_t_digest_${process.pid}`;
    const before = await digestCounts(schema);
    const comBefore = await mysqlGlobalStatus(['Com_insert', 'Com_select']);
    const { records, outcome } = await runWorker(plugin, {
      options: { technique: 'mysql-digest', interval: '200ms' },
      pluginDir,
      target,
      during: async () => mysqlWorkload(schema, K),
    });
    const comAfter = await mysqlGlobalStatus(['Com_insert', 'Com_select']);
    const after = await digestCounts(schema);
    expect(outcome.status, outcome.stderrTail).toBe('stopped');
    expect(outcome.parseErrors).toBe(0);

    const inSchema = (fp: string) => (l: Record<string, string>) =>
      l.schema === schema && l.fingerprint === fp;
    const serverInserts =
      after['INSERT INTO `t` VALUES (...)']! - (before['INSERT INTO `t` VALUES (...)'] ?? 0);
    const serverSelects =
      after['SELECT * FROM `t` WHERE ID = ?']! - (before['SELECT * FROM `t` WHERE ID = ?'] ?? 0);
    expect(serverInserts).toBe(K);
    expect(serverSelects).toBe(K);
    expect(sumBy(records, 'sql.calls', inSchema(INSERT))).toBe(serverInserts);
    expect(sumBy(records, 'sql.calls', inSchema(SELECT))).toBe(serverSelects);
    expect(sumBy(records, 'sql.calls', inSchema('select v from t where id in(?+)'))).toBe(1);
    // K different literals, one row each.
    const shapes = new Set(
      records
        .filter(
          (r): r is Sample =>
            r.kind === 'sample' && r.series === 'sql.calls' && r.labels?.schema === schema,
        )
        .map((r) => r.labels!.fingerprint),
    );
    expect([...shapes].sort()).toEqual(
      [
        INSERT,
        SELECT,
        'create table t(id int primary key, v varchar(?))',
        'select v from t where id in(?+)',
      ].sort(),
    );
    expect(sumBy(records, 'sql.rows_affected', inSchema(INSERT))).toBe(K);
    expect(sumBy(records, 'sql.rows_sent', inSchema(SELECT))).toBe(K);

    // Statement counters are server-wide: other clients (the OpenStack lab's services, other
    // suites) add to them. The tracer's window lies inside the test's before/after window, so it
    // counts at least the workload (K inserts, K+1 selects; its own polling is not counted) and at
    // most what the server counted over the wider window.
    const com = (c: string) => sumBy(records, 'sql.commands', (l) => l.command === c);
    expect(com('insert')).toBeGreaterThanOrEqual(K);
    expect(com('insert')).toBeLessThanOrEqual(comAfter.Com_insert! - comBefore.Com_insert!);
    expect(com('select')).toBeGreaterThanOrEqual(K + 1);
    expect(com('select')).toBeLessThanOrEqual(comAfter.Com_select! - comBefore.Com_select!);
  });

  it('switches a digest consumer that is off on, journaled, and off again on undo', async () => {
    const consumer = async () =>
      String(
        (
          await mysqlQuery(
            "SELECT ENABLED FROM performance_schema.setup_consumers WHERE NAME = 'statements_digest'",
          )
        )[0]!.ENABLED,
      );
    await mysqlQuery(
      "UPDATE performance_schema.setup_consumers SET ENABLED = 'NO' WHERE NAME = 'statements_digest'",
    );
    try {
      const options = validateOptions(plugin, { technique: 'mysql-digest' });
      const journal = await runSetup(options, `consumers-${process.pid}`, 'mysql-digest');
      expect(journal).toEqual([
        expect.objectContaining({
          kind: 'mysql-performance-schema-consumers',
          data: { consumers: ['statements_digest'] },
        }),
      ]);
      expect(await consumer()).toBe('YES');
      await runUndo(journal, options);
      expect(await consumer()).toBe('NO');
    } finally {
      await mysqlQuery(
        "UPDATE performance_schema.setup_consumers SET ENABLED = 'YES' WHERE NAME = 'statements_digest'",
      );
    }
  });

  it('survives its connection being killed: reconnects and still counts every statement', async () => {
    const schema = `scalpels_t_kill_${process.pid}`;
    const { records, outcome } = await runWorker(plugin, {
      options: { technique: 'mysql-digest', interval: '200ms' },
      pluginDir,
      target,
      during: async () => {
        mysqlWorkload(schema, K);
        const mine = await mysqlQuery(
          "SELECT PROCESSLIST_ID AS id FROM performance_schema.threads WHERE INSTRUMENTED = 'NO' AND TYPE = 'FOREGROUND' AND PROCESSLIST_ID IS NOT NULL",
        );
        expect(mine).toHaveLength(1);
        await mysqlQuery(`KILL ${Number(mine[0]!.id)}`);
        // Inserts while the collector has no connection are counted by the server all the same.
        const sql = Array.from(
          { length: K },
          (_, i) => `INSERT INTO t VALUES (${K + i + 1}, 'again');`,
        );
        execFileSync('mariadb', ['-uroot', schema], { input: sql.join('\n') });
        await new Promise((r) => setTimeout(r, 600));
      },
    });
    expect(outcome.status, outcome.stderrTail).toBe('stopped');
    expect(outcome.stderrTail).toMatch(/reconnecting/);
    expect(
      sumBy(records, 'sql.calls', (l) => l.schema === schema && l.fingerprint === INSERT),
    ).toBe(2 * K);
  });

  it('converts picoseconds to milliseconds exactly as SUM_TIMER_WAIT says', async () => {
    const schema = `scalpels_t_time_${process.pid}`;
    const q = () =>
      mysqlQuery(
        "SELECT SUM_TIMER_WAIT AS ps FROM performance_schema.events_statements_summary_by_digest WHERE SCHEMA_NAME = ? AND DIGEST_TEXT LIKE 'INSERT INTO `t` VALUES%'",
        [schema],
      );
    const { records } = await runWorker(plugin, {
      options: { technique: 'mysql-digest', interval: '1s' },
      pluginDir,
      target,
      during: async () => mysqlWorkload(schema, 10),
    });
    const ps = BigInt(String((await q())[0]!.ps));
    const ms = sumBy(records, 'sql.time', (l) => l.schema === schema && l.fingerprint === INSERT);
    expect(ms).toBeGreaterThan(0);
    expect(ms).toBeCloseTo(Number(ps) / 1e9, 6);
  });
});

describe.runIf(up)('the target names the server', () => {
  const serverPid = Number(
    execFileSync('pgrep', ['-o', '-x', 'mariadbd'], { encoding: 'utf8' }).trim(),
  );

  it('--service mariadbd: connects to the socket the server listens on', async () => {
    const spec = await plugin.worker(validateOptions(plugin, {}), {
      target: { kind: 'service', pids: [serverPid], description: 'service mariadbd' },
      taskId: 't',
      tracerId: 1,
      runtimeDir: '/tmp',
      pluginDir,
    });
    const cfg = JSON.parse(spec.env!.SCALPELS_SQL_QUERIES_CONFIG!) as {
      options: Record<string, unknown>;
    };
    expect(cfg.options.socket).toBe('/run/mysqld/mysqld.sock');
    // Credentials never ride on argv or in the worker's configuration.
    expect(JSON.stringify(spec.argv) + JSON.stringify(cfg)).not.toMatch(/password/i);
  });

  it('a PostgreSQL server as target of engine=mysql says which engine to set', async () => {
    const postmaster = Number(
      execFileSync('pgrep', ['-o', '-x', 'postgres'], { encoding: 'utf8' }).trim(),
    );
    expect(() =>
      plugin.worker(validateOptions(plugin, {}), {
        target: { kind: 'service', pids: [postmaster], description: 'service postgres' },
        taskId: 't',
        tracerId: 1,
        runtimeDir: '/tmp',
        pluginDir,
      }),
    ).toThrow('target service postgres is a PostgreSQL server: set engine=postgresql');
  });

  it('a target that is not a database server is one clear error', async () => {
    expect(() =>
      plugin.worker(validateOptions(plugin, {}), {
        target: { kind: 'pid', pids: [process.pid], description: `pid ${process.pid}` },
        taskId: 't',
        tracerId: 1,
        runtimeDir: '/tmp',
        pluginDir,
      }),
    ).toThrow(`target pid ${process.pid} listens on no MySQL/MariaDB socket`);
  });
});

describe.runIf(up)('server logs of MariaDB, journaled and restored', () => {
  it('slow log events (events=true): every statement with its duration, settings restored after stop', async () => {
    const schema = `scalpels_t_slow_${process.pid}`;
    const varsBefore = await mysqlVariables(LOG_VARIABLES);
    const technique = ps ? 'mysql-digest' : 'mysql-slow-log';
    const options = validateOptions(plugin, { events: true, technique, interval: '200ms' });
    const journal = await runSetup(options, `slow-${process.pid}`, technique);
    let logFile = '';
    try {
      expect(journal.map((j) => j.kind)).toContain('mysql-global-variables');
      const during = await mysqlVariables(LOG_VARIABLES);
      expect(during.slow_query_log).toBe('ON');
      expect(Number(during.long_query_time)).toBe(0);
      logFile = `/var/lib/mysql/${during.slow_query_log_file}`;
      const { records, outcome } = await runWorker(plugin, {
        options: { events: true, technique, interval: '200ms' },
        technique,
        pluginDir,
        target,
        during: async () => mysqlWorkload(schema, K),
      });
      expect(outcome.status, outcome.stderrTail).toBe('stopped');
      const ev = events(records).filter((e) => e.data?.schema === schema);
      const inserts = ev.filter((e) => e.key === INSERT);
      const selects = ev.filter((e) => e.key === SELECT);
      expect(inserts, outcome.stderrTail).toHaveLength(K);
      expect(selects, outcome.stderrTail).toHaveLength(K);
      for (const e of [...inserts, ...selects]) {
        expect(e.durationMs).toBeGreaterThan(0);
        expect(e.data?.user).toBe('root');
        expect(e.data?.source).toBe('slow-log');
      }
      expect(selects[0]!.data?.text).toBe('SELECT * FROM t WHERE id = 1');
      expect(selects.every((e) => e.value === 1)).toBe(true);
      // The tracer's own statements are not events.
      expect(
        events(records).some((e) =>
          /performance_schema|SHOW (GLOBAL|SESSION) STATUS/i.test(String(e.data?.text)),
        ),
      ).toBe(false);
    } finally {
      await runUndo(journal, options);
    }
    expect(await mysqlVariables(LOG_VARIABLES)).toEqual(varsBefore);
    expect(existsSync(logFile)).toBe(false);
    // Undo is idempotent.
    await runUndo(journal, options);
    expect(await mysqlVariables(LOG_VARIABLES)).toEqual(varsBefore);
  });

  it("refuses a log another store's tracer has switched on, so neither blinds nor restores the other", async () => {
    // Each runSetup journals into its own list: two stores, no lease shared between them.
    const varsBefore = await mysqlVariables(LOG_VARIABLES);
    const options = validateOptions(plugin, { technique: 'mysql-slow-log' });
    const first = await runSetup(options, `first-${process.pid}`, 'mysql-slow-log');
    try {
      const during = await mysqlVariables(LOG_VARIABLES);
      await expect(runSetup(options, `second-${process.pid}`, 'mysql-slow-log')).rejects.toThrow(
        /^another scalpels tracer is logging every statement on this server \(slow_query_log_file=scalpels-first-\d+-1-slow-log\.log\); stop it first, or run scalpels recover/,
      );
      // the first tracer's log untouched
      expect(await mysqlVariables(LOG_VARIABLES)).toEqual(during);
    } finally {
      await runUndo(first, options);
    }
    expect(await mysqlVariables(LOG_VARIABLES)).toEqual(varsBefore);
  });

  it('mysqlslap with fixed iterations: every statement of its concurrent connections is an event', async () => {
    const technique = ps ? 'mysql-digest' : 'mysql-slow-log';
    const options = validateOptions(plugin, { events: true, technique });
    const journal = await runSetup(options, `slap-${process.pid}`, technique);
    let records: TraceRecord[] = [];
    let stderrTail = '';
    const comBefore = await mysqlGlobalStatus(['Com_insert']);
    try {
      ({
        records,
        outcome: { stderrTail },
      } = await runWorker(plugin, {
        options: { events: true, technique },
        technique,
        pluginDir,
        target,
        during: async () =>
          execFileSync(
            'mysqlslap',
            [
              '-uroot',
              '--concurrency=4',
              '--iterations=2',
              '--number-of-queries=200',
              '--auto-generate-sql',
              '--auto-generate-sql-load-type=mixed',
              `--create-schema=scalpels_t_slap_${process.pid}`,
            ],
            { stdio: 'ignore' },
          ),
      }));
    } finally {
      await runUndo(journal, options);
    }
    const comInserts =
      (await mysqlGlobalStatus(['Com_insert'])).Com_insert! - comBefore.Com_insert!;
    const inserts = events(records).filter((e) => e.key === 'insert into t1 values(?+)');
    expect(comInserts).toBeGreaterThan(0);
    expect(inserts, stderrTail).toHaveLength(comInserts);
    // 2 iterations x 4 connections, plus the one that creates and drops the schema.
    expect(new Set(events(records).map((e) => e.data?.thread)).size).toBe(9);
    if (ps)
      expect(
        sumBy(records, 'sql.calls', (l) => l.fingerprint === 'insert into t1 values(?+)'),
      ).toBe(comInserts);
  });

  it("client=<pid> keeps only the statements of that process's connections", async () => {
    const schema = `scalpels_t_client_${process.pid}`;
    await mysqlQuery(`DROP DATABASE IF EXISTS ${schema}`);
    await mysqlQuery(`CREATE DATABASE ${schema}`);
    await mysqlQuery(`CREATE TABLE ${schema}.t (id INT PRIMARY KEY)`);
    const technique = 'mysql-slow-log';
    const setupOptions = validateOptions(plugin, { technique });
    const journal = await runSetup(setupOptions, `client-${process.pid}`, technique);
    // Two clients over TCP, connected after setup (the session takes long_query_time=0 then).
    const client = (): ChildProcessWithoutNullStreams =>
      spawn('mariadb', ['-h127.0.0.1', '-P3306', '-uroot', '-N', schema]);
    const [a, b] = [client(), client()];
    const send = (c: ChildProcessWithoutNullStreams, sql: string) => c.stdin.write(`${sql}\n`);
    const connected = () =>
      waitFor('both clients connected', async () => {
        const n = await mysqlQuery(
          'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ?',
          [schema],
        );
        return Number(n[0]!.n) === 2;
      });
    let records: TraceRecord[] = [];
    try {
      await connected();
      ({ records } = await runWorker(plugin, {
        options: { technique, client: String(a.pid), interval: '200ms' },
        technique,
        pluginDir,
        target,
        during: async () => {
          for (let i = 1; i <= 5; i++) send(a, `INSERT INTO t VALUES (${i});`);
          for (let i = 1; i <= 7; i++) send(b, `SELECT * FROM t WHERE id = ${i};`);
          // Stopped once the server has logged all twelve (b's must be there to be left out).
          const log = journaledLogFile(journal);
          await waitFor(
            'the twelve statements in the slow log',
            () =>
              occurrences(log, 'INSERT INTO t VALUES') >= 5 &&
              occurrences(log, 'SELECT * FROM t WHERE id') >= 7,
          );
        },
      }));
    } finally {
      for (const c of [a, b]) c.stdin.end();
      await runUndo(journal, setupOptions);
    }
    const ev = events(records).filter((e) => e.data?.schema === schema);
    expect(ev.map((e) => e.key)).toEqual(Array(5).fill('insert into t values(?+)'));
    expect(new Set(ev.map((e) => e.data?.host))).toEqual(new Set(['127.0.0.1']));
  });

  it('a 2 MB bulk INSERT stays one event with its fingerprint', async () => {
    const schema = `scalpels_t_bulk_${process.pid}`;
    await mysqlQuery(`DROP DATABASE IF EXISTS ${schema}`);
    await mysqlQuery(`CREATE DATABASE ${schema}`);
    await mysqlQuery(`CREATE TABLE ${schema}.t (id INT PRIMARY KEY, v VARCHAR(64))`);
    const rows = Array.from(
      { length: 50_000 },
      (_, i) => `(${i}, 'a longer value to make it bigger ${i}')`,
    );
    const bulk = `INSERT INTO t VALUES ${rows.join(', ')};`;
    expect(bulk.length).toBeGreaterThan(2 * 1024 * 1024);
    const options = validateOptions(plugin, { technique: 'mysql-slow-log' });
    const journal = await runSetup(options, `bulk-${process.pid}`, 'mysql-slow-log');
    let result: Awaited<ReturnType<typeof runWorker>>;
    try {
      result = await runWorker(plugin, {
        options: { technique: 'mysql-slow-log', 'text-max': 100 },
        pluginDir,
        target,
        during: async () => execFileSync('mariadb', ['-uroot', schema], { input: bulk }),
      });
    } finally {
      await runUndo(journal, options);
    }
    expect(result.outcome.parseErrors).toBe(0);
    const ev = events(result.records).filter((e) => e.data?.schema === schema);
    expect(ev.map((e) => e.key)).toEqual(['insert into t values(?+)']);
    expect(ev[0]!.data?.text).toBe(`${bulk.slice(0, 100)}...`);
    expect(ev[0]!.data?.rowsAffected).toBe(50_000);
  });

  it('general log technique: every statement, no durations', async () => {
    const schema = `scalpels_t_general_${process.pid}`;
    const varsBefore = await mysqlVariables(LOG_VARIABLES);
    const options = validateOptions(plugin, { technique: 'mysql-general-log', interval: '200ms' });
    const journal = await runSetup(options, `general-${process.pid}`, 'mysql-general-log');
    try {
      expect((await mysqlVariables(['general_log'])).general_log).toBe('ON');
      const { records } = await runWorker(plugin, {
        options: { technique: 'mysql-general-log', interval: '200ms' },
        pluginDir,
        target,
        during: async () => mysqlWorkload(schema, K),
      });
      const ev = events(records).filter((e) => e.data?.schema === schema);
      expect(ev.filter((e) => e.key === INSERT)).toHaveLength(K);
      expect(ev.filter((e) => e.key === SELECT)).toHaveLength(K);
      expect(ev.every((e) => e.durationMs === undefined && e.data?.source === 'general-log')).toBe(
        true,
      );
      // Statement counters come with every technique.
      expect(sumBy(records, 'sql.commands', (l) => l.command === 'insert')).toBe(K);
    } finally {
      await runUndo(journal, options);
    }
    expect(await mysqlVariables(LOG_VARIABLES)).toEqual(varsBefore);
  });

  it('a SIGKILLed worker leaves the settings changed until undo (what recover runs) restores them', async () => {
    const varsBefore = await mysqlVariables(LOG_VARIABLES);
    const options = validateOptions(plugin, { technique: 'mysql-slow-log' });
    const journal = await runSetup(options, `kill-${process.pid}`, 'mysql-slow-log');
    const spec = await plugin.worker(options, {
      target,
      taskId: 'kill',
      tracerId: 1,
      technique: 'mysql-slow-log',
      runtimeDir: '/tmp',
      pluginDir,
    });
    const child = spawn(spec.argv[0]!, spec.argv.slice(1), {
      env: { ...process.env, ...spec.env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    while (!out.includes('"t":"ready"')) await new Promise((r) => setTimeout(r, 20));
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    expect((await mysqlVariables(['slow_query_log'])).slow_query_log).toBe('ON');
    await runUndo(journal, options);
    expect(await mysqlVariables(LOG_VARIABLES)).toEqual(varsBefore);
  });
});
