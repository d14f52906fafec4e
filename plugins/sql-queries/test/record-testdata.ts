/**
 * Records testdata from the real collector against this machine's MariaDB and PostgreSQL (not a
 * test: run on purpose with `npx vitest run -c plugins/sql-queries/test/record.vitest.config.ts`
 * after `npx tsc -b plugins/sql-queries`). Writes testdata/<case>/stdout.txt, options.json,
 * truth.json (what the server counted, read by an independent connection) and, from the parser,
 * expected.json.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'vitest';
import { parseTestdataCase, loadTestdata } from '@scalpels/core/testing';
import { validateOptions } from '@scalpels/core';
import { MYSQL_SECRET_STATEMENTS, PG_SECRET_STATEMENTS } from './secret-statements.js';
import plugin from '../src/index.js';
import {
  mysqlGlobalStatus,
  mysqlQuery,
  mysqlWorkload,
  pgQuery,
  pgWorkload,
  pluginDir,
  runSetup,
  runUndo,
  target,
} from './helpers.js';

const K = 20;
const testdata = join(pluginDir, 'testdata');

async function digestsOf(schema: string): Promise<Record<string, number>> {
  const rows = await mysqlQuery(
    'SELECT DIGEST, COUNT_STAR FROM performance_schema.events_statements_summary_by_digest WHERE SCHEMA_NAME = ?',
    [schema],
  );
  return Object.fromEntries(rows.map((r) => [String(r.DIGEST), Number(r.COUNT_STAR)]));
}

async function pgssOf(table: string): Promise<Record<string, number>> {
  const rows = await pgQuery(
    'SELECT queryid::text AS id, calls FROM pg_stat_statements WHERE query LIKE $1',
    [`%${table}%`],
  );
  return Object.fromEntries(rows.map((r) => [String(r.id), Number(r.calls)]));
}

function delta(
  after: Record<string, number>,
  before: Record<string, number>,
): Record<string, number> {
  return Object.fromEntries(
    Object.entries(after)
      .map(([k, v]) => [k, v - (before[k] ?? 0)])
      .filter(([, v]) => v !== 0),
  );
}

async function record(
  name: string,
  raw: Record<string, unknown>,
  workload: () => Promise<Record<string, unknown>>,
  command: string,
): Promise<void> {
  const options = validateOptions(plugin, raw);
  const technique = String(raw.technique);
  const journal = await runSetup(options, `record-${name}`, technique);
  let stdout = '';
  let truth: Record<string, unknown> = {};
  try {
    const spec = await plugin.worker(options, {
      target,
      taskId: `record-${name}`,
      tracerId: 1,
      technique,
      runtimeDir: '/tmp',
      pluginDir,
    });
    const child = spawn(spec.argv[0]!, spec.argv.slice(1), {
      env: { ...process.env, ...spec.env },
    });
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.pipe(process.stderr);
    while (!stdout.includes('"t":"ready"')) await new Promise((r) => setTimeout(r, 20));
    truth = await workload();
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  } finally {
    await runUndo(journal, options);
  }
  const dir = join(testdata, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'stdout.txt'), stdout);
  writeFileSync(join(dir, 'options.json'), `${JSON.stringify({ ...raw, technique }, null, 2)}\n`);
  writeFileSync(join(dir, 'truth.json'), `${JSON.stringify(truth, null, 2)}\n`);
  writeFileSync(
    join(dir, 'README.md'),
    `# ${name}\n\nRecorded on ${new Date().toISOString().slice(0, 10)} from the real collector (\`dist/worker-main.js\`, technique \`${technique}\`) with\n\n    npx tsc -b plugins/sql-queries && npx vitest run -c plugins/sql-queries/test/record.vitest.config.ts\n\nOptions: \`${JSON.stringify(raw)}\`. Workload, run by the real client while the collector ran\n(\`mysqlWorkload\`/\`pgWorkload\` in test/helpers.ts), in shell terms:\n\n    ${command}\n\n\`truth.json\` holds what the server itself counted for the workload, read by a separate connection\n(before/after deltas); the parser test checks \`expected.json\` against it.\n`,
  );
  const c = loadTestdata(testdata).find((x) => x.name === name)!;
  const out = parseTestdataCase(plugin, c);
  writeFileSync(
    join(dir, 'expected.json'),
    `${JSON.stringify({ records: out.records, parseErrors: out.diagnostics.length, dropped: out.dropped }, null, 2)}\n`,
  );
}

const mysqlCase = (schema: string) => async () => {
  await mysqlQuery(`DROP DATABASE IF EXISTS ${schema}`);
  const before = await digestsOf(schema);
  const com = await mysqlGlobalStatus(['Com_insert', 'Com_select']);
  mysqlWorkload(schema, K);
  const comAfter = await mysqlGlobalStatus(['Com_insert', 'Com_select']);
  const after = await digestsOf(schema);
  await mysqlQuery(`DROP DATABASE IF EXISTS ${schema}`);
  return {
    k: K,
    inserts: K,
    selects: K + 1,
    digests: delta(after, before),
    Com_insert: comAfter.Com_insert! - com.Com_insert!,
  };
};

const mysqlCommand = (schema: string) =>
  `mariadb -uroot -N ${schema} <<< "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(32)); INSERT INTO t VALUES (i, 'value i') for i in 1..${K}; SELECT * FROM t WHERE id = i for i in 1..${K}; SELECT v FROM t WHERE id IN (1, 2, 3);"`;

it('records MariaDB performance_schema digests', async () => {
  await record(
    'mariadb-10.11.19-digest-k20',
    { technique: 'mysql-digest', interval: '200ms' },
    mysqlCase('scalpels_rec_digest'),
    mysqlCommand('scalpels_rec_digest'),
  );
});

it('records MariaDB digests with slow log events', async () => {
  await record(
    'mariadb-10.11.19-digest-slowlog-events-k20',
    { technique: 'mysql-digest', events: true, interval: '200ms' },
    mysqlCase('scalpels_rec_slow'),
    mysqlCommand('scalpels_rec_slow'),
  );
});

it('records the MariaDB general log technique', async () => {
  await record(
    'mariadb-10.11.19-general-log-k20',
    { technique: 'mysql-general-log', interval: '200ms' },
    mysqlCase('scalpels_rec_general'),
    mysqlCommand('scalpels_rec_general'),
  );
});

const pgCase = (table: string) => async () => {
  const before = await pgssOf(table);
  pgWorkload(table, K);
  const after = await pgssOf(table);
  return { k: K, inserts: K, selects: K, pgStatStatements: delta(after, before) };
};
const pgCommand = (table: string) =>
  `psql -h 127.0.0.1 -U postgres -qAt <<< "DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (id int PRIMARY KEY, v text); INSERT INTO ${table} VALUES (i, 'value i') for i in 1..${K}; SELECT * FROM ${table} WHERE id = i for i in 1..${K}; DROP TABLE ${table};"`;

it('records PostgreSQL pg_stat_statements', async () => {
  await record(
    'postgresql-15.20-pg-stat-statements-k20',
    { engine: 'postgresql', technique: 'pg-stat-statements', interval: '200ms' },
    pgCase('scalpels_rec_pgss'),
    pgCommand('scalpels_rec_pgss'),
  );
});

it('records the PostgreSQL statement log', async () => {
  await record(
    'postgresql-15.20-pg-log-k20',
    { engine: 'postgresql', technique: 'pg-log', interval: '200ms' },
    pgCase('scalpels_rec_pglog'),
    pgCommand('scalpels_rec_pglog'),
  );
});

// ---------------------------------------------------------------------------------------------
// Statements that carry passwords, as the real server logs them: the redaction test
// (test/redaction.test.ts) checks that none of SECRETS reaches a record.

const mysqlSecretsCase = () => async () => {
  // --force: some shapes are refused by MariaDB (they are still logged, which is the point).
  const out = execFileSync('mariadb', ['-uroot', '-N', '--force'], {
    input: MYSQL_SECRET_STATEMENTS.join('\n'),
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return { statements: MYSQL_SECRET_STATEMENTS.length, output: out.trim() };
};

const pgSecretsCase = () => async () => {
  execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-qAt'], {
    input: PG_SECRET_STATEMENTS.join('\n'),
    encoding: 'utf8',
  });
  return { statements: PG_SECRET_STATEMENTS.length };
};

it('records password statements through MariaDB digests and slow log events', async () => {
  await record(
    'mariadb-10.11.19-secrets-digest-slowlog',
    { technique: 'mysql-digest', events: true, interval: '200ms' },
    mysqlSecretsCase(),
    'mariadb -uroot --force <<< "$MYSQL_SECRET_STATEMENTS" (test/record-testdata.ts)',
  );
});

it('records password statements through the MariaDB general log', async () => {
  await record(
    'mariadb-10.11.19-secrets-general-log',
    { technique: 'mysql-general-log', interval: '200ms' },
    mysqlSecretsCase(),
    'mariadb -uroot --force <<< "$MYSQL_SECRET_STATEMENTS" (test/record-testdata.ts)',
  );
});

it('records password statements through the PostgreSQL log and pg_stat_statements', async () => {
  await record(
    'postgresql-15.20-secrets-pg-log',
    { engine: 'postgresql', technique: 'pg-log', interval: '200ms' },
    pgSecretsCase(),
    'psql -h 127.0.0.1 -U postgres <<< "$PG_SECRET_STATEMENTS" (test/record-testdata.ts)',
  );
  await record(
    'postgresql-15.20-secrets-pg-stat-statements',
    { engine: 'postgresql', technique: 'pg-stat-statements', interval: '200ms' },
    pgSecretsCase(),
    'psql -h 127.0.0.1 -U postgres <<< "$PG_SECRET_STATEMENTS" (test/record-testdata.ts)',
  );
});
