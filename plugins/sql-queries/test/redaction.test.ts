/**
 * Passwords never reach the store: statements that carry them, run on the real MariaDB and
 * PostgreSQL and captured from the real log and digest sources (testdata/*-secrets-*, recorded by
 * test/record-testdata.ts), parsed as the runner would.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTestdata, parseTestdataCase } from '@scalpels/core/testing';
import plugin from '../src/index.js';
import { redact } from '../src/parser.js';
import { pluginDir } from './helpers.js';
import { SECRETS } from './secret-statements.js';

const cases = loadTestdata(join(pluginDir, 'testdata')).filter((c) => c.name.includes('secrets'));

describe('password redaction on recorded server output', () => {
  it('has the four recorded sources', () => {
    expect(cases.map((c) => c.name).sort()).toEqual([
      'mariadb-10.11.19-secrets-digest-slowlog',
      'mariadb-10.11.19-secrets-general-log',
      'postgresql-15.20-secrets-pg-log',
      'postgresql-15.20-secrets-pg-stat-statements',
    ]);
  });

  for (const c of cases)
    it(`${c.name}: no secret in any record, and the statements are there`, () => {
      // The worker's own output holds them (the server logged them): redaction is the parser's.
      expect(SECRETS.some((s) => c.stdout.includes(s))).toBe(true);
      const out = parseTestdataCase(plugin, c);
      const stored = JSON.stringify(out.records);
      for (const s of SECRETS) expect(stored, s).not.toContain(s);
      // What the recorder wrote as the parser's output holds none either.
      for (const s of SECRETS) expect(JSON.stringify(c.expected), s).not.toContain(s);
      if (c.name.includes('pg-stat-statements')) return; // digests: fingerprints only, checked above
      const texts = out.records.flatMap((r) =>
        r.kind === 'event' && typeof r.data?.text === 'string' ? [r.data.text] : [],
      );
      const redacted = texts.filter((t) => t.includes("'***'"));
      const expected = c.name.startsWith('postgresql') ? 4 : 11;
      expect(redacted.length, texts.join('\n')).toBeGreaterThanOrEqual(expected);
    });

  it('each shape the issue named, and the account after SET PASSWORD FOR stays', () => {
    expect(redact("CREATE USER u IDENTIFIED /*c*/ BY 'x1'")).toBe(
      "CREATE USER u IDENTIFIED /*c*/ BY '***'",
    );
    expect(redact('CHANGE MASTER TO MASTER_PASSWORD="x2"')).toBe(
      "CHANGE MASTER TO MASTER_PASSWORD='***'",
    );
    expect(redact("ALTER USER u IDENTIFIED VIA mysql_native_password USING '*ABC'")).toBe(
      "ALTER USER u IDENTIFIED VIA mysql_native_password USING '***'",
    );
    expect(redact("SET PASSWORD FOR 'a'@'%' = 'x3'")).toBe("SET PASSWORD FOR 'a'@'%' = '***'");
    expect(redact("CREATE USER u IDENTIFIED BY /*!'x4'*/")).not.toContain('x4');
    expect(redact("ALTER ROLE r PASSWORD 'unterminated")).toBe("ALTER ROLE r PASSWORD '***'");
    expect(redact("SELECT 'kept'; ALTER ROLE r PASSWORD 'x5'")).toBe(
      "SELECT 'kept'; ALTER ROLE r PASSWORD '***'",
    );
  });
});
