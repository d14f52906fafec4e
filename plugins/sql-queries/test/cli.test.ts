/** End to end through the scalpels CLI: run, report, and recover after a SIGKILL, on this machine's MariaDB. */
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capability, trustedScratchDir, waitFor } from '@scalpels/core/testing';
import {
  LOG_VARIABLES,
  cli,
  cliScratch,
  digestCounts,
  dropTestSchemas,
  mysqlQuery,
  mysqlUp,
  mysqlVariables,
  serverLock,
  sqlCalls,
} from './helpers.js';

let releaseServer: (() => void) | undefined;
beforeAll(async () => {
  releaseServer = await serverLock();
}, 600_000);
afterAll(() => releaseServer?.());

const canRun =
  capability(
    'scalpels CLI built',
    cli !== undefined,
    'no built @scalpels/cli found: build the workspace (npx tsc -b)',
  ) && capability('mariadb', mysqlUp(), 'no MariaDB answering as root on /run/mysqld/mysqld.sock');
const scratch = cliScratch('scalpels-sql-cli-');
afterAll(async () => {
  scratch.remove();
  if (canRun) await dropTestSchemas();
});

const K = 25;

describe.runIf(canRun)('sql-queries through the scalpels CLI', () => {
  it('run with events=true: exact digest counts, a fingerprint profile, settings back afterwards', async () => {
    const ps = Number((await mysqlQuery('SELECT @@performance_schema AS ps'))[0]!.ps) === 1;
    const schema = `scalpels_t_cli_${process.pid}`;
    await mysqlQuery(`DROP DATABASE IF EXISTS ${schema}`);
    await mysqlQuery(`CREATE DATABASE ${schema}`);
    const sql = ['CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(32));'];
    for (let i = 1; i <= K; i++) sql.push(`INSERT INTO t VALUES (${i}, 'v${i}');`);
    for (let i = 1; i <= K; i++) sql.push(`SELECT * FROM t WHERE id = ${i};`);
    const file = join(scratch.dir, 'workload.sql');
    writeFileSync(file, sql.join('\n'));
    const varsBefore = await mysqlVariables(LOG_VARIABLES);
    const before = await digestCounts(schema);
    const store = `sqlite://${join(scratch.dir, 'run.db')}`;
    await scratch.ok(
      [
        'run',
        '-t',
        'sql-queries',
        '--set',
        'sql-queries.events=true',
        '--set',
        'sql-queries.interval=200ms',
        '--store',
        store,
        '--',
        'sh',
        '-c',
        `mariadb -uroot -N ${schema} < ${file}`,
      ],
      60_000,
    );
    const after = await digestCounts(schema);
    expect(await mysqlVariables(LOG_VARIABLES)).toEqual(varsBefore);
    const report = await scratch.report('--last', { store });
    expect(report.format).toBe('scalpels.report/v1');
    const t = report.tracers.find((x) => x.tracer === 'sql-queries')!;
    expect(t.status).toBe('stopped');
    expect(t.parseErrors).toBe(0);
    const top = (key: string) => t.events.top.find((e) => e.key === key);
    // K statements with K different literals: one profile row each, every statement counted.
    expect(top('select * from t where id = ?')).toMatchObject({ count: K });
    expect(top('insert into t values(?+)')).toMatchObject({ count: K });
    expect(top('select * from t where id = ?')!.totalMs).toBeGreaterThan(0);
    // The pt-query-digest profile: the plugin's report view, in the same report.
    const table = report.summary.sections
      .find((x) => x.tracer === 'sql-queries')!
      .tables.find((x) => x.title === 'Profile by fingerprint')!;
    const col = (label: string) => table.columns.findIndex((c) => c.label === label);
    const rows = table.rows.map((r) => ({
      fingerprint: r.key[0]!,
      calls: r.values[col('calls')],
      time: r.values[col('time')] ?? 0,
      share: r.values[col('share')] ?? 0,
      p95Ms: r.values[col('p95')],
    }));
    // Ranked by total time.
    for (let i = 1; i < rows.length; i++)
      expect(rows[i]!.time).toBeLessThanOrEqual(rows[i - 1]!.time);
    expect(rows.find((r) => r.fingerprint === 'select * from t where id = ?')).toMatchObject({
      calls: K,
      p95Ms: expect.any(Number),
    });
    // Shares of the rows shown (the top 10 of all) add up to at most 1.
    expect(rows.reduce((a, r) => a + r.share, 0)).toBeLessThanOrEqual(1 + 1e-9);
    if (ps) {
      expect(t.technique).toBe('mysql-digest');
      const calls = (fp: string) => sqlCalls(t, fp, { schema });
      expect(calls('insert into t values(?+)')).toBe(
        after['INSERT INTO `t` VALUES (...)']! - (before['INSERT INTO `t` VALUES (...)'] ?? 0),
      );
      expect(calls('select * from t where id = ?')).toBe(
        after['SELECT * FROM `t` WHERE ID = ?']! - (before['SELECT * FROM `t` WHERE ID = ?'] ?? 0),
      );
      expect(calls('select * from t where id = ?')).toBe(K);
    }
  });

  it('after the CLI is killed with SIGKILL, recover puts every server setting back', async () => {
    const varsBefore = await mysqlVariables(LOG_VARIABLES);
    const store = `sqlite://${join(scratch.dir, 'kill.db')}`;
    const child = scratch.start(
      [
        'run',
        '-t',
        'sql-queries',
        '--set',
        'sql-queries.events=true',
        '--store',
        store,
        '--',
        'sleep',
        '60',
      ],
      'ignore',
    );
    const exited = new Promise((r) => child.once('exit', r));
    // Tracing is on once the server logs everything (or the run ended, which the checks below catch).
    await waitFor(
      'the server to log every statement',
      async () =>
        child.exitCode !== null ||
        child.signalCode !== null ||
        (await mysqlVariables(['long_query_time'])).long_query_time === '0.000000',
    );
    expect(await mysqlVariables(['slow_query_log', 'long_query_time'])).toEqual({
      slow_query_log: 'ON',
      long_query_time: '0.000000',
    });
    // The workload the killed CLI leaves behind (launcher, sleep) is ended by this test, by pid.
    const leftovers = descendants(child.pid!);
    child.kill('SIGKILL');
    await exited;
    expect((await mysqlVariables(['slow_query_log'])).slow_query_log).toBe('ON');
    await scratch.ok(['recover', '--store', store], 60_000);
    expect(await mysqlVariables(LOG_VARIABLES)).toEqual(varsBefore);
    for (const pid of leftovers) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
});

describe.runIf(canRun)('sql-queries errors through the scalpels CLI', () => {
  // Option files must be root's and protected (docs/security.md): a trusted scratch folder.
  const cnfDir = trustedScratchDir('sql-cli-');
  const wrong = join(cnfDir, 'wrong.cnf');
  const limited = join(cnfDir, 'limited.cnf');
  beforeAll(async () => {
    await mysqlQuery(
      "CREATE USER IF NOT EXISTS 'scalpels_cli_limited'@'localhost' IDENTIFIED BY 'cli-secret'",
    );
    writeFileSync(wrong, '[client]\nuser=scalpels_cli_limited\npassword=not-the-secret\n', {
      mode: 0o600,
    });
    writeFileSync(limited, '[client]\nuser=scalpels_cli_limited\npassword=cli-secret\n', {
      mode: 0o600,
    });
  });
  afterAll(async () => {
    await mysqlQuery("DROP USER IF EXISTS 'scalpels_cli_limited'@'localhost'");
    rmSync(cnfDir, { recursive: true, force: true });
  });

  const fails = async (sets: string[]): Promise<string> => {
    const store = `sqlite://${join(scratch.dir, 'errors.db')}`;
    const r = await scratch.run(
      [
        'run',
        '-t',
        'sql-queries',
        ...sets.flatMap((s) => ['--set', `sql-queries.${s}`]),
        '--store',
        store,
        '--',
        'true',
      ],
      60_000,
    );
    expect(r.exitCode, `run should fail with 1: ${r.stderr}`).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toMatch(/\s+at \S+ \(|not-the-secret|cli-secret/);
    return lines[0]!;
  };

  it('a wrong password is one line', async () => {
    expect(await fails([`defaults-file=${wrong}`])).toMatch(
      /authentication failed \(Access denied for user 'scalpels_cli_limited'/,
    );
  });

  it('an unreachable server is one line', async () => {
    expect(await fails(['host=127.0.0.1', 'port=1'])).toMatch(
      /MySQL\/MariaDB \S+@127.0.0.1:1: server unreachable/,
    );
  });

  it('missing privileges are one line with the GRANT', async () => {
    expect(await fails([`defaults-file=${limited}`])).toMatch(
      /cannot read performance_schema digests|cannot change global variables/,
    );
    expect(await fails([`defaults-file=${limited}`, 'technique=mysql-slow-log'])).toMatch(
      /cannot change global variables .* GRANT SUPER/,
    );
  });
});

function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of parent)
      if ((ppid === root || out.includes(ppid)) && !out.includes(pid)) {
        out.push(pid);
        grew = true;
      }
  }
  return out;
}
