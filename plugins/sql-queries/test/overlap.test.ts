/**
 * Two overlapping `scalpels run -t sql-queries` on one server, the first stopping while the
 * second still runs: the shared server settings are leases, so the second keeps what it needs,
 * counts every statement of its workload, and the server ends as it began.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capability, waitFor } from '@scalpels/core/testing';
import {
  LOG_VARIABLES,
  cli,
  cliScratch,
  mysqlQuery,
  mysqlUp,
  mysqlVariables,
  pgQuery,
  pgUp,
  serverLock,
  sqlCalls,
  type CliReport,
} from './helpers.js';

let releaseServer: (() => void) | undefined;
beforeAll(async () => {
  releaseServer = await serverLock();
}, 600_000);
afterAll(() => releaseServer?.());

const built = capability(
  'scalpels CLI built',
  cli !== undefined,
  'no built @scalpels/cli found: build the workspace (npx tsc -b)',
);
const pg = built && capability('postgresql', pgUp(), 'no PostgreSQL as postgres on 127.0.0.1');
const pgss =
  pg &&
  capability(
    'pg_stat_statements',
    String(
      (await pgQuery("SELECT current_setting('shared_preload_libraries') AS v"))[0]!.v,
    ).includes('pg_stat_statements'),
    'pg_stat_statements is not preloaded: run plugins/sql-queries/test/ci-enable-statement-stats.sh',
  );
const maria = built && capability('mariadb', mysqlUp(), 'no MariaDB as root on its socket');

const scratch = cliScratch('scalpels-sql-overlap-');
afterAll(() => scratch.remove());
const N = 300;

/**
 * A `scalpels run` whose command signals it started (file `<name>.started`), waits for
 * `<name>.go`, then runs `then` (a shell command) and exits.
 */
function background(name: string, sets: string[], then = 'true') {
  const started = join(scratch.dir, `${name}.started`);
  const go = join(scratch.dir, `${name}.go`);
  const args = ['run', '-t', 'sql-queries', '--name', name, '--format', 'none'];
  for (const s of sets) args.push('--set', `sql-queries.${s}`);
  args.push(
    '--',
    'sh',
    '-c',
    `touch ${started}; while [ ! -e ${go} ]; do sleep 0.05; done; ${then}`,
  );
  const child = scratch.start(args, ['ignore', 'pipe', 'pipe']);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  let code: number | null | undefined;
  void exited.then((c) => (code = c));
  return {
    pid: child.pid!,
    started: () => existsSync(started) || code !== undefined,
    go: () => writeFileSync(go, ''),
    exited,
    stderr: () => stderr,
  };
}

const report = (name: string): Promise<CliReport> => scratch.report(name, { top: 1000 });

const calls = (r: CliReport, fingerprint: string, labels: Record<string, string> = {}): number =>
  sqlCalls(r.tracers[0]!, fingerprint, labels);

/** First starts, second starts, first stops, then second runs its workload and stops. */
async function overlap(sets: string[], workload: string): Promise<{ a: CliReport; b: CliReport }> {
  const tag = `${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
  const first = background(`first-${tag}`, sets);
  await waitFor('the first run to start', first.started);
  const second = background(`second-${tag}`, sets, workload);
  await waitFor('the second run to start', second.started);
  first.go();
  expect(await first.exited, first.stderr()).toBe(0);
  second.go();
  expect(await second.exited, second.stderr()).toBe(0);
  return { a: await report(`first-${tag}`), b: await report(`second-${tag}`) };
}

describe.runIf(pgss)('two overlapping sql-queries tracers on PostgreSQL', () => {
  const installed = async () =>
    (await pgQuery("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")).length > 0;
  const table = `scalpels_overlap_${process.pid}`;
  let before: boolean;
  beforeAll(async () => {
    before = await installed();
    await pgQuery(`DROP TABLE IF EXISTS ${table}`);
    await pgQuery(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
  });
  afterAll(async () => {
    await pgQuery(`DROP TABLE IF EXISTS ${table}`);
    // As the machine was before this file.
    if (before) await pgQuery('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    else await pgQuery('DROP EXTENSION IF EXISTS pg_stat_statements');
  });

  const sql = join(scratch.dir, 'pg-workload.sql');
  writeFileSync(
    sql,
    Array.from({ length: N }, (_, i) => `SELECT * FROM ${table} WHERE id = ${i};`).join('\n'),
  );
  const workload = `psql -h 127.0.0.1 -U postgres -qAt -v ON_ERROR_STOP=1 -f ${sql} > /dev/null`;
  const sets = ['engine=postgresql', 'technique=pg-stat-statements', 'interval=200ms'];

  for (const initially of [false, true]) {
    it(`the second counts its ${N} statements exactly; the extension ends ${initially ? 'present' : 'absent'} as it began`, async () => {
      await pgQuery(
        initially
          ? 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
          : 'DROP EXTENSION IF EXISTS pg_stat_statements',
      );
      const { a, b } = await overlap(sets, workload);
      expect(a.tracers[0]!.status).toBe('stopped');
      expect(b.tracers[0], JSON.stringify(b.tracers[0]?.error)).toMatchObject({
        status: 'stopped',
      });
      expect(calls(b, `select * from ${table} where id = ?`)).toBe(N);
      expect(await installed()).toBe(initially);
    }, 300_000);
  }
});

describe.runIf(pgss)('a tracer killed while another holds the same lease', () => {
  const table = `scalpels_overlap_kill_${process.pid}`;
  let before: boolean;
  const installed = async () =>
    (await pgQuery("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")).length > 0;
  beforeAll(async () => {
    before = await installed();
    await pgQuery(`DROP TABLE IF EXISTS ${table}`);
    await pgQuery(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
  });
  afterAll(async () => {
    await pgQuery(`DROP TABLE IF EXISTS ${table}`);
    if (before) await pgQuery('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    else await pgQuery('DROP EXTENSION IF EXISTS pg_stat_statements');
  });

  for (const recover of [true, false])
    it(
      recover
        ? 'scalpels recover releases only the dead holder: the extension stays for the live one, then goes'
        : 'without recover, the live holder stopping last drops the dead holder of its node and restores',
      async () => {
        await pgQuery('DROP EXTENSION IF EXISTS pg_stat_statements');
        const sql = join(scratch.dir, 'pg-kill-workload.sql');
        writeFileSync(
          sql,
          Array.from({ length: N }, (_, i) => `SELECT * FROM ${table} WHERE id = ${i};`).join('\n'),
        );
        const sets = ['engine=postgresql', 'technique=pg-stat-statements', 'interval=200ms'];
        const tag = `${process.pid}-kill-${recover}`;
        const first = background(`first-${tag}`, sets);
        await waitFor('the first run to start', first.started);
        const second = background(
          `second-${tag}`,
          sets,
          `psql -h 127.0.0.1 -U postgres -qAt -v ON_ERROR_STOP=1 -f ${sql} > /dev/null`,
        );
        await waitFor('the second run to start', second.started);
        // The first holder's owner dies without a word; its workload is let go.
        process.kill(first.pid, 'SIGKILL');
        first.go(); // its workload, left behind, ends (and closes the pipes it inherited)
        await first.exited;
        if (recover) {
          expect(await scratch.ok(['recover'])).toMatch(/recovered 1 interrupted tracer/);
        }
        // A live holder remains: nothing restored under it.
        expect(await installed()).toBe(true);
        second.go();
        expect(await second.exited, second.stderr()).toBe(0);
        const b = await report(`second-${tag}`);
        expect(b.tracers[0], JSON.stringify(b.tracers[0]?.error)).toMatchObject({
          status: 'stopped',
        });
        expect(calls(b, `select * from ${table} where id = ?`)).toBe(N);
        if (recover) expect((await report(`first-${tag}`)).tracers[0]!.status).toBe('interrupted');
        // The last holder restored the server as it began.
        expect(await installed()).toBe(false);
      },
      300_000,
    );
});

describe.runIf(maria)('two overlapping sql-queries tracers on MariaDB', () => {
  const schema = `scalpels_t_overlap_${process.pid}`;
  beforeAll(async () => {
    await mysqlQuery(`DROP DATABASE IF EXISTS ${schema}`);
    await mysqlQuery(`CREATE DATABASE ${schema}`);
    await mysqlQuery(`CREATE TABLE ${schema}.t (id INT PRIMARY KEY)`);
  });
  afterAll(async () => {
    await mysqlQuery(`DROP DATABASE IF EXISTS ${schema}`);
  });

  it(`slow log, log_output and digest consumers: the second gets its ${N} statements as events and digests; settings end as they began`, async () => {
    const consumers = async () =>
      mysqlQuery(
        "SELECT NAME, ENABLED FROM performance_schema.setup_consumers WHERE NAME IN ('global_instrumentation', 'statements_digest') ORDER BY NAME",
      );
    const varsBefore = await mysqlVariables(LOG_VARIABLES);
    const consumersBefore = await consumers();
    const sql = join(scratch.dir, 'mysql-workload.sql');
    writeFileSync(
      sql,
      Array.from({ length: N }, (_, i) => `SELECT * FROM t WHERE id = ${i};`).join('\n'),
    );
    const { a, b } = await overlap(
      ['events=true', 'events-source=slow-log', 'interval=200ms'],
      `mariadb -uroot -N ${schema} < ${sql} > /dev/null`,
    );
    expect(a.tracers[0]!.status).toBe('stopped');
    expect(b.tracers[0], JSON.stringify(b.tracers[0]?.error)).toMatchObject({ status: 'stopped' });
    expect(
      b.tracers[0]!.events.top.find((e) => e.key === 'select * from t where id = ?'),
    ).toMatchObject({
      count: N,
    });
    const ps = Number((await mysqlQuery('SELECT @@performance_schema AS ps'))[0]!.ps) === 1;
    if (ps) expect(calls(b, 'select * from t where id = ?', { schema })).toBe(N);
    expect(await mysqlVariables(LOG_VARIABLES)).toEqual(varsBefore);
    expect(await consumers()).toEqual(consumersBefore);
  }, 300_000);
});
