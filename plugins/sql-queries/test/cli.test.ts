/** End to end through the scalpels CLI: run, report, and recover after a SIGKILL, on this machine's MariaDB. */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capability } from '@scalpels/core/testing';
import {
  LOG_VARIABLES,
  digestCounts,
  dropTestSchemas,
  mysqlQuery,
  mysqlUp,
  mysqlVariables,
  serverLock,
} from './helpers.js';

let releaseServer: (() => void) | undefined;
beforeAll(async () => {
  releaseServer = await serverLock();
}, 300_000);
afterAll(() => releaseServer?.());

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../../cli/dist/main.js', import.meta.url));
const profileCli = fileURLToPath(new URL('../dist/profile-cli.js', import.meta.url));
const canRun =
  capability(
    'scalpels CLI built',
    existsSync(cli),
    `${cli} missing: build the workspace (npx tsc -b)`,
  ) && capability('mariadb', mysqlUp(), 'no MariaDB answering as root on /run/mysqld/mysqld.sock');
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-sql-cli-'));
afterAll(async () => {
  rmSync(scratch, { recursive: true, force: true });
  if (canRun) await dropTestSchemas();
});
const env = { ...process.env, XDG_DATA_HOME: scratch, NO_COLOR: '1' };

interface Report {
  format: string;
  tracers: {
    tracer: string;
    status: string;
    technique?: string;
    parseErrors: number;
    series: { name: string; labels: Record<string, string>; sum?: number }[];
    events: {
      count: number;
      top: { key: string; count: number; totalMs: number; meanMs: number; p95Ms: number }[];
    };
  }[];
}

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
    const file = join(scratch, 'workload.sql');
    writeFileSync(file, sql.join('\n'));
    const varsBefore = await mysqlVariables(LOG_VARIABLES);
    const before = await digestCounts(schema);
    const store = `sqlite://${join(scratch, 'run.db')}`;
    await run(
      process.execPath,
      [
        cli,
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
      { env, timeout: 60_000 },
    );
    const after = await digestCounts(schema);
    expect(await mysqlVariables(LOG_VARIABLES)).toEqual(varsBefore);
    const { stdout } = await run(
      process.execPath,
      [cli, 'report', '--last', '--format', 'json', '--store', store],
      { env },
    );
    const report = JSON.parse(stdout) as Report;
    writeFileSync(join(scratch, 'report.json'), stdout);
    expect(report.format).toBe('scalpels.report/v1');
    const t = report.tracers.find((x) => x.tracer === 'sql-queries')!;
    expect(t.status).toBe('stopped');
    expect(t.parseErrors).toBe(0);
    const top = (key: string) => t.events.top.find((e) => e.key === key);
    // K statements with K different literals: one profile row each, every statement counted.
    expect(top('select * from t where id = ?')).toMatchObject({ count: K });
    expect(top('insert into t values(?+)')).toMatchObject({ count: K });
    expect(top('select * from t where id = ?')!.totalMs).toBeGreaterThan(0);
    // The pt-query-digest profile built from the same report.
    const prof = JSON.parse(
      (await run(process.execPath, [profileCli, join(scratch, 'report.json'), '--json'], { env }))
        .stdout,
    ) as {
      tracer: string;
      profile: {
        rank: number;
        fingerprint: string;
        calls: number;
        share: number;
        p95Ms?: number;
      }[];
    }[];
    const rows = prof[0]!.profile;
    expect(rows.map((r) => r.rank)).toEqual(rows.map((_, i) => i + 1));
    expect(rows.find((r) => r.fingerprint === 'select * from t where id = ?')).toMatchObject({
      calls: K,
      p95Ms: expect.any(Number),
    });
    expect(rows.reduce((a, r) => a + r.share, 0)).toBeCloseTo(1, 6);
    if (ps) {
      expect(t.technique).toBe('mysql-digest');
      const calls = (fp: string) =>
        t.series
          .filter(
            (s) =>
              s.name === 'sql.calls' && s.labels.schema === schema && s.labels.fingerprint === fp,
          )
          .reduce((a, s) => a + (s.sum ?? 0), 0);
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
    const store = `sqlite://${join(scratch, 'kill.db')}`;
    const child = spawn(
      process.execPath,
      [
        cli,
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
      { env, stdio: 'ignore' },
    );
    // Tracing is on once the server logs everything.
    for (let i = 0; i < 200; i++) {
      if ((await mysqlVariables(['long_query_time'])).long_query_time === '0.000000') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await mysqlVariables(['slow_query_log', 'long_query_time'])).toEqual({
      slow_query_log: 'ON',
      long_query_time: '0.000000',
    });
    // The workload the killed CLI leaves behind (launcher, sleep) is ended by this test, by pid.
    const leftovers = descendants(child.pid!);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    expect((await mysqlVariables(['slow_query_log'])).slow_query_log).toBe('ON');
    await run(process.execPath, [cli, 'recover', '--store', store], { env, timeout: 60_000 });
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
  const wrong = join(scratch, 'wrong.cnf');
  const limited = join(scratch, 'limited.cnf');
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
  });

  const fails = async (sets: string[]): Promise<string> => {
    const store = `sqlite://${join(scratch, 'errors.db')}`;
    const args = [
      cli,
      'run',
      '-t',
      'sql-queries',
      ...sets.flatMap((s) => ['--set', `sql-queries.${s}`]),
      '--store',
      store,
      '--',
      'true',
    ];
    const r = await run(process.execPath, args, { env, timeout: 60_000 }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(r, 'run should fail').toBeDefined();
    expect(r!.code).toBe(1);
    const lines = r!.stderr.trim().split('\n');
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
