/** Live tests against this machine's PostgreSQL: pg_stat_statements deltas and the statement log. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capability, runWorker, waitFor } from '@scalpels/core/testing';
import { validateOptions, type Sample, type TraceEvent, type TraceRecord } from '@scalpels/core';
import plugin from '../src/index.js';
import {
  occurrences,
  pgQuery,
  pgServerLogFile,
  pgUp,
  pgWorkload,
  pluginDir,
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
  'postgresql',
  pgUp(),
  'no PostgreSQL answering as postgres on 127.0.0.1:5432 (trust)',
);
const pgss =
  up &&
  String((await pgQuery("SELECT current_setting('shared_preload_libraries') AS v"))[0]!.v).includes(
    'pg_stat_statements',
  );
const pgssOk = capability(
  'pg_stat_statements',
  pgss,
  'pg_stat_statements is not preloaded: run plugins/sql-queries/test/ci-enable-statement-stats.sh',
);
const K = 30;

const sum = (records: TraceRecord[], series: string, fp: (f: string) => boolean): number =>
  records
    .filter(
      (r): r is Sample =>
        r.kind === 'sample' && r.series === series && fp(r.labels?.fingerprint ?? ''),
    )
    .reduce((a, r) => a + r.value, 0);

describe.runIf(up && pgssOk)('pg-stat-statements', () => {
  it('counts a known workload exactly as pg_stat_statements does', async () => {
    const table = `scalpels_pgss_${process.pid}`;
    const { records, outcome } = await runWorker(plugin, {
      options: { engine: 'postgresql', technique: 'pg-stat-statements', interval: '200ms' },
      pluginDir,
      target,
      // setup creates the extension (a lease) when the database lacks it; undone afterwards.
      setup: true,
      during: async () => pgWorkload(table, K),
    });
    expect(outcome.status, outcome.stderrTail).toBe('stopped');
    expect(outcome.parseErrors).toBe(0);
    const insert = `insert into ${table} values(?+)`;
    const select = `select * from ${table} where id = ?`;
    expect(sum(records, 'sql.calls', (f) => f === insert)).toBe(K);
    expect(sum(records, 'sql.calls', (f) => f === select)).toBe(K);
    expect(sum(records, 'sql.rows_sent', (f) => f === select)).toBe(K);
    expect(sum(records, 'sql.time', (f) => f === select)).toBeGreaterThan(0);
    // Our own polling stays out.
    expect(sum(records, 'sql.calls', (f) => f.includes('pg_stat_statements'))).toBe(0);
  });
});

describe.runIf(up)('pg-log', () => {
  it('logs every statement with its duration while traced, then restores log_min_duration_statement', async () => {
    const before = await pgQuery(
      "SELECT setting, source FROM pg_settings WHERE name = 'log_min_duration_statement'",
    );
    const options = validateOptions(plugin, {
      engine: 'postgresql',
      technique: 'pg-log',
      interval: '200ms',
    });
    const journal = await runSetup(options, `pglog-${process.pid}`, 'pg-log');
    const table = `scalpels_pglog_${process.pid}`;
    try {
      expect(journal.map((j) => j.kind)).toEqual(['pg-log-min-duration-statement']);
      expect(
        (await pgQuery("SELECT current_setting('log_min_duration_statement') AS v"))[0]!.v,
      ).toBe('0');
      const { records, outcome } = await runWorker(plugin, {
        options: { engine: 'postgresql', technique: 'pg-log', interval: '200ms' },
        pluginDir,
        target,
        during: async () => pgWorkload(table, K),
      });
      expect(outcome.status, outcome.stderrTail).toBe('stopped');
      const ev = records.filter((r): r is TraceEvent => r.kind === 'event');
      const selects = ev.filter((e) => e.key === `select * from ${table} where id = ?`);
      expect(ev.filter((e) => e.key === `insert into ${table} values(?+)`)).toHaveLength(K);
      expect(selects).toHaveLength(K);
      expect(
        selects.every(
          (e) =>
            (e.durationMs ?? -1) >= 0 &&
            e.data?.user === 'postgres' &&
            e.data?.schema === 'postgres',
        ),
      ).toBe(true);
      expect(selects[0]!.data?.text).toBe(`SELECT * FROM ${table} WHERE id = 1`);
    } finally {
      await runUndo(journal, options);
    }
    expect(
      await pgQuery(
        "SELECT setting, source FROM pg_settings WHERE name = 'log_min_duration_statement'",
      ),
    ).toEqual(before);
  });

  it("refuses the log setting another store's tracer holds, so neither restores the other's", async () => {
    // Each runSetup journals into its own list: two stores, no lease shared between them.
    const autoConf = () =>
      pgQuery(
        "SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf' AND name IN ('log_min_duration_statement', 'scalpels.log_owner') ORDER BY name",
      );
    const before = await autoConf();
    const options = validateOptions(plugin, { engine: 'postgresql', technique: 'pg-log' });
    const first = await runSetup(options, `pgfirst-${process.pid}`, 'pg-log');
    try {
      const during = await autoConf();
      expect(during).toEqual([
        { name: 'log_min_duration_statement', setting: '0' },
        { name: 'scalpels.log_owner', setting: `pgfirst-${process.pid}-1` },
      ]);
      await expect(runSetup(options, `pgsecond-${process.pid}`, 'pg-log')).rejects.toThrow(
        new RegExp(
          `^another scalpels tracer is logging every statement on this server \\(scalpels\\.log_owner=pgfirst-${process.pid}-1 in postgresql\\.auto\\.conf\\); stop it first`,
        ),
      );
      expect(await autoConf()).toEqual(during);
    } finally {
      await runUndo(first, options);
    }
    expect(await autoConf()).toEqual(before);
  });
});

describe.runIf(up)('pg-log with client=', () => {
  it("keeps only the statements of that process's connections", async () => {
    const options = validateOptions(plugin, { engine: 'postgresql', technique: 'pg-log' });
    const journal = await runSetup(options, `pgclient-${process.pid}`, 'pg-log');
    const log = await pgServerLogFile();
    const table = `scalpels_pgclient_${process.pid}`;
    await pgQuery(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
    const client = (): ChildProcessWithoutNullStreams =>
      spawn('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-qAt']);
    const [a, b] = [client(), client()];
    let records: TraceRecord[] = [];
    try {
      await waitFor('both psql clients connected', async () => {
        const n = await pgQuery(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'psql' AND client_port > 0",
        );
        return n[0]!.n === 2;
      });
      ({ records } = await runWorker(plugin, {
        options: {
          engine: 'postgresql',
          technique: 'pg-log',
          client: String(a.pid),
          interval: '200ms',
        },
        pluginDir,
        target,
        during: async () => {
          const inserts = occurrences(log, `INSERT INTO ${table} VALUES`);
          const selects = occurrences(log, `SELECT * FROM ${table} WHERE id`);
          for (let i = 1; i <= 4; i++) a.stdin.write(`INSERT INTO ${table} VALUES (${i});\n`);
          for (let i = 1; i <= 6; i++) b.stdin.write(`SELECT * FROM ${table} WHERE id = ${i};\n`);
          // Stopped once the server has logged all ten (b's must be there to be left out).
          await waitFor(
            'the ten statements in the server log',
            () =>
              occurrences(log, `INSERT INTO ${table} VALUES`) >= inserts + 4 &&
              occurrences(log, `SELECT * FROM ${table} WHERE id`) >= selects + 6,
          );
        },
      }));
    } finally {
      for (const c of [a, b]) c.stdin.end();
      await runUndo(journal, options);
      await pgQuery(`DROP TABLE IF EXISTS ${table}`);
    }
    const ev = records.filter((r): r is TraceEvent => r.kind === 'event');
    expect(ev.map((e) => e.key)).toEqual(Array(4).fill(`insert into ${table} values(?+)`));
  });
});
