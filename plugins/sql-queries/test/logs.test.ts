/** Server log parsers over logs recorded from this machine's MariaDB (test/fixtures, see README there). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GeneralLogParser, PgLogParser, SlowLogParser, type LogParser } from '../src/logs.js';
import { pluginDir } from './helpers.js';

function parseAll(p: LogParser, text: string) {
  const out = text.split('\n').flatMap((l) => p.push(l));
  return [...out, ...p.flush()];
}

const fixture = (f: string) => readFileSync(join(pluginDir, 'test', 'fixtures', f), 'utf8');

describe('MariaDB slow log', () => {
  const entries = parseAll(new SlowLogParser(), fixture('mariadb-10.11-slow.log'));
  it('gives one entry per statement, with the header fields', () => {
    expect(entries.map((e) => e.text)).toEqual([
      'select * from t where id = 1',
      'select * from t\n where id in (1,2)',
      "insert into t values (7,'x') on duplicate key update v='y'",
      'select sleep(0.01)',
      'select nosuch from t',
      'SELECT DATABASE()',
      "update t set v='z' where id=7",
    ]);
    expect(entries[3]).toMatchObject({
      thread: 11,
      user: 'root',
      host: 'localhost',
      schema: 'scalpels_probe',
      durationMs: 10.21,
      rowsSent: 1,
      ts: 1795695041000,
    });
    expect(entries[6]).toMatchObject({
      thread: 12,
      host: '127.0.0.1',
      schema: 'scalpels_probe',
      rowsAffected: 1,
      rowsExamined: 1,
    });
    expect(entries[5]!.schema).toBeUndefined();
  });

  it('keeps an entry whose statement is not written yet until it is', () => {
    const lines = fixture('mariadb-10.11-slow.log').split('\n');
    const p = new SlowLogParser();
    const head = lines.slice(0, 9); // through the first entry's `use` line
    const rest = lines.slice(9);
    expect(head.flatMap((l) => p.push(l))).toEqual([]);
    expect(p.flushComplete()).toEqual([]);
    const out = [...rest.flatMap((l) => p.push(l)), ...p.flushComplete()];
    expect(out.map((e) => e.text)).toHaveLength(7);
    expect(out[0]).toMatchObject({
      text: 'select * from t where id = 1',
      schema: 'scalpels_probe',
      thread: 11,
    });
  });

  it('reads the MySQL 8 header layout (thread id on the User@Host line)', () => {
    const mysql8 = [
      '# Time: 2024-05-01T10:00:00.123456Z',
      '# User@Host: nova[nova] @  [10.0.0.5]  Id:    42',
      '# Query_time: 0.000250  Lock_time: 0.000010 Rows_sent: 1  Rows_examined: 3',
      'use nova;',
      'SET timestamp=1714557600;',
      'SELECT 1;',
    ].join('\n');
    expect(parseAll(new SlowLogParser(), mysql8)).toEqual([
      {
        t: 'statement',
        source: 'slow-log',
        user: 'nova',
        host: '10.0.0.5',
        thread: 42,
        durationMs: 0.25,
        lockMs: 0.01,
        rowsSent: 1,
        rowsExamined: 3,
        schema: 'nova',
        ts: 1714557600000,
        text: 'SELECT 1',
      },
    ]);
  });
});

describe('MariaDB general log', () => {
  const entries = parseAll(new GeneralLogParser(), fixture('mariadb-10.11-general.log'));
  it('gives the Query lines with who and which schema, multi-line statements joined', () => {
    expect(entries.map((e) => [e.thread, e.user, e.schema, e.text])).toEqual([
      [11, 'root', 'scalpels_probe', 'select * from t where id = 1'],
      [11, 'root', 'scalpels_probe', 'select * from t\n where id in (1,2)'],
      [11, 'root', 'scalpels_probe', "insert into t values (7,'x') on duplicate key update v='y'"],
      [11, 'root', 'scalpels_probe', 'select sleep(0.01)'],
      [11, 'root', 'scalpels_probe', 'select nosuch from t'],
      [12, 'root', undefined, 'SELECT DATABASE()'],
      [12, 'root', 'scalpels_probe', "update t set v='z' where id=7"],
      [
        13,
        'root',
        undefined,
        "set global slow_query_log=0, global general_log=0, global long_query_time=10, global slow_query_log_file='vm-slow.log', global general_log_file='vm.log'",
      ],
    ]);
    expect(entries.every((e) => e.durationMs === undefined)).toBe(true);
  });
});

describe('PostgreSQL log', () => {
  it('takes statement and execute lines, not parse/bind, with continuation lines', () => {
    const log = [
      '2026-11-26 12:00:00.500 UTC [4242] nova@nova LOG:  duration: 0.500 ms  statement: SELECT 1',
      '2026-11-26 12:00:01.000 UTC [4243] nova@nova LOG:  duration: 0.010 ms  parse <unnamed>: SELECT $1',
      '2026-11-26 12:00:01.000 UTC [4243] nova@nova LOG:  duration: 0.010 ms  bind <unnamed>: SELECT $1',
      '2026-11-26 12:00:01.000 UTC [4243] nova@nova LOG:  duration: 1.000 ms  execute <unnamed>: SELECT $1',
      "2026-11-26 12:00:01.000 UTC [4243] nova@nova DETAIL:  parameters: $1 = '5'",
      '2026-11-26 12:00:02.000 UTC [4244] postgres@db LOG:  duration: 2.000 ms  statement: SELECT a',
      '\tFROM t;',
      '2026-11-26 12:00:03.000 UTC [4244] postgres@db LOG:  checkpoint starting: time',
    ].join('\n');
    expect(parseAll(new PgLogParser(), log)).toEqual([
      {
        t: 'statement',
        source: 'pg-log',
        ts: Math.round(Date.parse('2026-11-26T12:00:00.500Z') - 0.5),
        durationMs: 0.5,
        text: 'SELECT 1',
        thread: 4242,
        user: 'nova',
        schema: 'nova',
      },
      {
        t: 'statement',
        source: 'pg-log',
        ts: Date.parse('2026-11-26T12:00:01.000Z') - 1,
        durationMs: 1,
        text: 'SELECT $1',
        thread: 4243,
        user: 'nova',
        schema: 'nova',
      },
      {
        t: 'statement',
        source: 'pg-log',
        ts: Date.parse('2026-11-26T12:00:02.000Z') - 2,
        durationMs: 2,
        text: 'SELECT a\nFROM t',
        thread: 4244,
        user: 'postgres',
        schema: 'db',
      },
    ]);
  });
});
