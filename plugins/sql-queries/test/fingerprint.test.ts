import { describe, expect, it } from 'vitest';
import { fingerprint } from '../src/fingerprint.js';

describe('fingerprint', () => {
  it('groups statements that differ only in literals, and the server digest of them', () => {
    const shapes = [
      'SELECT * FROM t WHERE id = 1',
      'select * from t where id=2',
      'SELECT *\n  FROM `t`\n WHERE `id` = 42 -- why',
      'SELECT * FROM `t` WHERE ID = ? ',
    ];
    expect(new Set(shapes.map((s) => fingerprint(s))).size).toBe(1);
    expect(fingerprint(shapes[0]!)).toBe('select * from t where id = ?');
  });

  it('collapses IN and VALUES lists of any length (raw text and MariaDB digests alike)', () => {
    expect(fingerprint('select * from t where id in (1, 2, 3)')).toBe(
      'select * from t where id in(?+)',
    );
    expect(fingerprint('SELECT * FROM `t` WHERE ID IN (...) ')).toBe(
      'select * from t where id in(?+)',
    );
    expect(fingerprint("insert into t values (1,'a'),(2,'b'),(3,NULL)")).toBe(
      'insert into t values(?+)',
    );
    expect(fingerprint('INSERT INTO `t` VALUES (...) /* , ... */ ')).toBe(
      'insert into t values(?+)',
    );
    // Other parenthesized literals keep their arity.
    expect(fingerprint('select sleep(0.5), concat(1, 2)')).toBe('select sleep(?), concat(?, ?)');
  });

  it('replaces strings, numbers, hex, escapes and placeholders, not identifiers', () => {
    expect(
      fingerprint(
        "select t1.a from t1 where s = 'it''s \\' x' and n = -1.5e3 and h = 0xFF and b = x'0A'",
      ),
    ).toBe('select t1.a from t1 where s = ? and n = ? and h = ? and b = ?');
    expect(
      fingerprint(
        'SELECT $1::int FROM "Weird Table" WHERE a = $2 AND s = $tag$x$tag$',
        'postgresql',
      ),
    ).toBe('select ?::int from weird table where a = ? and s = ?');
    expect(fingerprint('SELECT "x" FROM t', 'mysql')).toBe('select ? from t');
  });

  it('spells type names as written, whatever the MariaDB digest says', () => {
    expect(fingerprint('CREATE TABLE `t` ( ID INTEGER PRIMARY KEY , `v` VARCHARACTER (?) ) ')).toBe(
      fingerprint('create table t (id int primary key, v varchar(32))'),
    );
  });

  it('drops comments and normalizes spacing around punctuation', () => {
    expect(fingerprint('/* nova */ SELECT COUNT ( * ) FROM `db` . `t`  ;')).toBe(
      'select count(*) from db.t',
    );
    expect(fingerprint('select a,b from t # trailing')).toBe('select a, b from t');
  });
});
