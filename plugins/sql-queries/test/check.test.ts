/** check() as doctor and `plugins list` run it, against the real servers, and its one-line answers. */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capability, runWorker, trustedScratchDir } from '@scalpels/core/testing';
import { validateOptions, type CheckContext } from '@scalpels/core';
import plugin from '../src/index.js';
import { checkMysql, checkPg } from '../src/checks.js';
import { PERFORMANCE_SCHEMA_FIX } from '../src/server.js';
import {
  mysqlGlobalStatus,
  mysqlQuery,
  mysqlUp,
  pgUp,
  pluginDir,
  target,
  serverLock,
} from './helpers.js';
import type { Options } from '../src/options.js';

let releaseServer: (() => void) | undefined;
beforeAll(async () => {
  releaseServer = await serverLock();
}, 600_000);
afterAll(() => releaseServer?.());

function ctx(
  raw: Record<string, unknown>,
  depth: 'quick' | 'full' = 'full',
): CheckContext<Options> {
  return {
    options: validateOptions(plugin, raw),
    depth,
    isRoot: process.getuid?.() === 0,
    exec: async () => ({ exitCode: 1, stdout: '', stderr: 'not used' }),
    which: async () => undefined,
  };
}

const oneLine = (s: string) => expect(s).not.toMatch(/\n|\s+at \S+ \(/);

describe('check verdicts', () => {
  it('says performance_schema is OFF with the one-line fix, and falls back to the slow log', () => {
    const facts = {
      engine: 'mysql' as const,
      where: 'MySQL/MariaDB root@/run/mysqld/mysqld.sock',
      version: '10.11.19-MariaDB',
      performanceSchema: false,
      local: true,
    };
    const digest = checkMysql('mysql-digest', facts, validateOptions(plugin, {}));
    expect(digest).toEqual({
      status: 'fixable',
      detail: `${facts.where} (10.11.19-MariaDB): performance_schema is OFF`,
      hint: PERFORMANCE_SCHEMA_FIX,
    });
    const slow = checkMysql('mysql-slow-log', facts, validateOptions(plugin, {}));
    expect(slow.status).toBe('ok');
    expect(slow.detail).toContain('performance_schema is OFF');
  });

  it('asks for pg_stat_statements when it is not preloaded', () => {
    const r = checkPg(
      'pg-stat-statements',
      { engine: 'postgresql', where: 'PostgreSQL x', preloaded: false, superuser: true },
      validateOptions(plugin, {}),
    );
    expect(r.status).toBe('fixable');
    expect(r.hint).toContain("shared_preload_libraries = 'pg_stat_statements'");
  });

  it('refuses client= without per-statement events, and a technique of the other engine', () => {
    expect(() => validateOptions(plugin, { client: 'nova-api' })).toThrow(
      /client= narrows per-statement events/,
    );
    expect(() => validateOptions(plugin, { technique: 'pg-log' })).toThrow(
      /does not fit engine=mysql/,
    );
  });
});

const mysqlOk = capability(
  'mariadb',
  mysqlUp(),
  'no MariaDB answering as root on /run/mysqld/mysqld.sock',
);

describe.runIf(mysqlOk)('check against MariaDB', () => {
  // Option files must be root's and protected (docs/security.md): a trusted scratch folder.
  const dir = trustedScratchDir('sql-check-');
  const wrong = join(dir, 'wrong.cnf');
  const limited = join(dir, 'limited.cnf');
  beforeAll(async () => {
    await mysqlQuery(
      "CREATE USER IF NOT EXISTS 'scalpels_limited'@'localhost' IDENTIFIED BY 'limited-secret'",
    );
    writeFileSync(wrong, '[client]\nuser = scalpels_limited\npassword = "not-the-password"\n', {
      mode: 0o600,
    });
    writeFileSync(limited, '[client]\nuser=scalpels_limited\npassword=limited-secret\n', {
      mode: 0o600,
    });
  });
  afterAll(async () => {
    await mysqlQuery("DROP USER IF EXISTS 'scalpels_limited'@'localhost'");
    rmSync(dir, { recursive: true, force: true });
  });

  it('full: root on the socket works, with the best technique here', async () => {
    const ps = Number((await mysqlQuery('SELECT @@performance_schema AS ps'))[0]!.ps) === 1;
    const r = await plugin.check(ctx({}));
    expect(r.status).toBe('ok');
    expect(r.technique).toBe(ps ? 'mysql-digest' : 'mysql-slow-log');
    oneLine(r.detail);
  });

  it('quick: connects to nothing', async () => {
    const before = (await mysqlGlobalStatus(['Connections'])).Connections!;
    const r = await plugin.check(ctx({}, 'quick'));
    const after = (await mysqlGlobalStatus(['Connections'])).Connections!;
    expect(r.status).toBe('ok');
    expect(r.technique).toBeUndefined();
    // Only the second status read itself connected.
    expect(after - before).toBe(1);
  });

  it('a wrong password is one clear line, and the password is not in it', async () => {
    const r = await plugin.check(ctx({ 'defaults-file': wrong }));
    expect(r.status).toBe('fixable');
    expect(r.detail).toMatch(
      /^MySQL\/MariaDB scalpels_limited@\/run\/mysqld\/mysqld.sock: authentication failed \(Access denied/,
    );
    expect(r.detail).not.toContain('not-the-password');
    oneLine(r.detail);
  });

  it('an unreachable server is one clear line', async () => {
    const r = await plugin.check(ctx({ host: '127.0.0.1', port: 1 }));
    expect(r).toMatchObject({
      status: 'unavailable',
      detail: expect.stringMatching(
        /^MySQL\/MariaDB \S+@127.0.0.1:1: server unreachable \(connect ECONNREFUSED/,
      ),
    });
    oneLine(r.detail);
  });

  it('missing privileges are one clear line with the GRANT that fixes them', async () => {
    const r = await plugin.check(ctx({ 'defaults-file': limited }));
    expect(r.status).toBe('fixable');
    expect(r.hint).toMatch(/^GRANT /);
    oneLine(r.detail);
    const slow = await plugin.check(ctx({ 'defaults-file': limited, technique: 'mysql-slow-log' }));
    expect(slow).toMatchObject({ status: 'fixable', hint: expect.stringContaining('GRANT SUPER') });
  });

  it('run with a wrong password fails with the same line, not a stack trace', async () => {
    const err = await runWorker(plugin, {
      options: { 'defaults-file': wrong },
      pluginDir,
      target,
    }).then(
      () => undefined,
      (e: Error) => e.message,
    );
    expect(err).toMatch(/sql-queries: MySQL\/MariaDB scalpels_limited@\S+: authentication failed/);
    expect(err).not.toMatch(/\s+at \S+ \(|not-the-password/);
  });
});

describe.runIf(capability('postgresql', pgUp(), 'no PostgreSQL on 127.0.0.1:5432'))(
  'check against PostgreSQL',
  () => {
    it('full: postgres over the socket works', async () => {
      const r = await plugin.check(ctx({ engine: 'postgresql' }));
      expect(r.status).toBe('ok');
      expect(['pg-stat-statements', 'pg-log']).toContain(r.technique);
      oneLine(r.detail);
    });

    it('an unknown role is one clear line', async () => {
      const r = await plugin.check(ctx({ engine: 'postgresql', user: 'scalpels_nosuch_role' }));
      expect(r.status).toBe('fixable');
      expect(r.detail).toMatch(
        /authentication failed \(role "scalpels_nosuch_role" does not exist\)/,
      );
      oneLine(r.detail);
    });
  },
);
