/**
 * Statement fingerprints in the spirit of pt-query-digest: comments dropped, literals replaced by
 * `?`, value and IN lists collapsed to `(?+)`, identifiers unquoted, case and spacing normalized.
 * Raw statements (slow log, general log, PostgreSQL log) and the server's own normalized texts
 * (performance_schema DIGEST_TEXT, pg_stat_statements query) give the same fingerprint for the same
 * statement shape, so series and events of one statement group under one key.
 */

export type Dialect = 'mysql' | 'postgresql';

const MAX_FINGERPRINT = 2048;

export function fingerprint(sql: string, dialect: Dialect = 'mysql'): string {
  let s = stripCommentsAndLiterals(sql, dialect);
  // Server digests truncate long texts with `...`; keep the marker but do not let it differ.
  s = s.toLowerCase();
  // Placeholders of prepared statements and server digests: `$1`, `:name`, `?`.
  s = s.replace(/\$\d+/g, '?');
  // MariaDB digests spell some type names out: INT is INTEGER, VARCHAR is VARCHARACTER.
  s = s.replace(/\binteger\b/g, 'int').replace(/\bvarcharacter\b/g, 'varchar');
  // Numbers not part of an identifier (t1 stays), including signs, decimals, exponents, hex.
  s = s.replace(
    /(^|[^\w$.?])[-+]?(?:0x[0-9a-f]+|\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)(?![\w$])/g,
    '$1?',
  );
  s = s.replace(/\s+/g, ' ');
  s = normalizePunctuation(s);
  s = collapseLists(s);
  s = s.trim().replace(/;$/, '').trim();
  if (s.length > MAX_FINGERPRINT) s = `${s.slice(0, MAX_FINGERPRINT)}...`;
  return s;
}

/** Removes comments, replaces string literals with `?` and unquotes identifiers, in one scan. */
function stripCommentsAndLiterals(sql: string, dialect: Dialect): string {
  let out = '';
  const n = sql.length;
  let i = 0;
  // Ordinary text is copied in runs up to the next character that may start something special.
  const special = /[-#/'"`$]|[xXbBeE](?=')/g;
  while (i < n) {
    special.lastIndex = i;
    const m = special.exec(sql);
    const at = m ? m.index : n;
    if (at > i) {
      out += sql.slice(i, at);
      i = at;
      if (i >= n) break;
    }
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? n : end;
      out += ' ';
    } else if (c === '#' && dialect === 'mysql') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? n : end;
      out += ' ';
    } else if (c === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
      out += ' ';
    } else if (c === "'" || (c === '"' && dialect === 'mysql')) {
      i = skipQuoted(sql, i, c, dialect === 'mysql');
      out += '?';
    } else if (c === '`' || (c === '"' && dialect === 'postgresql')) {
      // Quoted identifier: keep its name, drop the quotes.
      const end = sql.indexOf(c, i + 1);
      const stop = end < 0 ? n : end;
      out += sql.slice(i + 1, stop);
      i = stop + 1;
    } else if (c === '$' && dialect === 'postgresql' && /^\$(\w*)\$/.test(sql.slice(i))) {
      // Dollar-quoted string: $tag$ ... $tag$
      const tag = /^\$(\w*)\$/.exec(sql.slice(i))![0];
      const end = sql.indexOf(tag, i + tag.length);
      i = end < 0 ? n : end + tag.length;
      out += '?';
    } else if (
      (c === 'x' || c === 'X' || c === 'b' || c === 'B' || c === 'E' || c === 'e') &&
      next === "'" &&
      !/\w/.test(sql[i - 1] ?? ' ')
    ) {
      i = skipQuoted(sql, i + 1, "'", true);
      out += '?';
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

function skipQuoted(sql: string, start: number, quote: string, backslashEscapes: boolean): number {
  let i = start + 1;
  while (i < sql.length) {
    const c = sql[i]!;
    if (backslashEscapes && c === '\\') i += 2;
    else if (c === quote) {
      if (sql[i + 1] === quote) i += 2;
      else return i + 1;
    } else i++;
  }
  return sql.length;
}

function normalizePunctuation(s: string): string {
  return (
    s
      .replace(/\s*\.\s*/g, '.')
      .replace(/\s*,\s*/g, ', ')
      .replace(/\(\s+/g, '(')
      .replace(/\s+\)/g, ')')
      // `count (*)` and `count(*)`, `in (` and `in(`: no space before an opening parenthesis.
      .replace(/(\w)\s+\(/g, '$1(')
      .replace(/\s*(<=>|<=|>=|<>|!=|:=|=|<|>)\s*/g, ' $1 ')
      .replace(/ {2,}/g, ' ')
  );
}

/** IN lists of only literals become `in(?+)`; `values(...), (...)` becomes `values(?+)` (as pt-query-digest). */
function collapseLists(s: string): string {
  // MariaDB digests write IN lists and multi-row VALUES as `(...)`, the extra rows as a comment (gone already).
  s = s.replace(/\b(in|values?)\(\.\.\.\)/g, '$1(?+)');
  s = s.replace(/\bin\((?:\?|null)(?:, (?:\?|null))*\)/g, 'in(?+)');
  s = s.replace(
    /\b(values?)\((?:[^()']|\([^()]*\))*\)(?:, \((?:[^()']|\([^()]*\))*\))*/g,
    '$1(?+)',
  );
  return s;
}
