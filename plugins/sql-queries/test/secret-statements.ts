/**
 * Statements that carry passwords, run on the real servers by test/record-testdata.ts; the
 * redaction test checks that none of SECRETS reaches a record.
 */

/** Each secret appears once, in a statement shape a redaction regex used to miss or might miss. */
export const MYSQL_SECRET_STATEMENTS: readonly string[] = [
  "CREATE USER 'scalpels_sec_a'@'localhost' IDENTIFIED /*c*/ BY 'Sec-comment-1';",
  "ALTER USER 'scalpels_sec_a'@'localhost' IDENTIFIED BY 'Sec-plain-2';",
  "CREATE USER 'scalpels_sec_b'@'localhost' IDENTIFIED VIA mysql_native_password USING '*7A1B2C3D4E5F60718293A4B5C6D7E8F901234567';",
  "ALTER USER 'scalpels_sec_b'@'localhost' IDENTIFIED WITH mysql_native_password AS '*0A1B2C3D4E5F60718293A4B5C6D7E8F9Sec3hash';",
  "ALTER USER 'scalpels_sec_b'@'localhost' IDENTIFIED WITH mysql_native_password BY 'Sec-with-by-4';",
  "SET PASSWORD FOR 'scalpels_sec_a'@'localhost' = PASSWORD('Sec-setpw-5');",
  "SET PASSWORD FOR 'scalpels_sec_a'@'localhost' = 'Sec-setpw-raw-6';",
  "ALTER USER 'scalpels_sec_b'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('Sec-using-pw-7');",
  "CHANGE MASTER 'scalpels_sec' TO MASTER_HOST='192.0.2.1', MASTER_USER='repl', MASTER_PASSWORD=\"Sec-master-8\";",
  "RESET SLAVE 'scalpels_sec' ALL;",
  "CREATE SERVER scalpels_sec_srv FOREIGN DATA WRAPPER mysql OPTIONS (HOST '192.0.2.1', USER 'u', PASSWORD 'Sec-server-9');",
  'DROP SERVER scalpels_sec_srv;',
  "CREATE USER 'scalpels_sec_c'@'localhost' IDENTIFIED BY /*!'Sec-versioned-10'*/;",
  "DROP USER IF EXISTS 'scalpels_sec_a'@'localhost', 'scalpels_sec_b'@'localhost', 'scalpels_sec_c'@'localhost';",
];

export const PG_SECRET_STATEMENTS: readonly string[] = [
  "CREATE ROLE scalpels_sec_r LOGIN PASSWORD 'Sec-pg-role-1';",
  "ALTER ROLE scalpels_sec_r WITH ENCRYPTED PASSWORD 'Sec-pg-enc-2';",
  'ALTER ROLE scalpels_sec_r PASSWORD $$Sec-pg-dollar-3$$;',
  "ALTER USER scalpels_sec_r /* c */ PASSWORD E'Sec-pg-escape-4';",
  'DROP ROLE scalpels_sec_r;',
];

/** The secret of each statement that has one (and the password hashes, secrets too). */
export const SECRETS: readonly string[] = [
  ...[...MYSQL_SECRET_STATEMENTS, ...PG_SECRET_STATEMENTS].flatMap(
    (s) => /Sec-[A-Za-z0-9-]+/.exec(s)?.[0] ?? [],
  ),
  '7A1B2C3D4E5F60718293A4B5C6D7E8F901234567',
  '0A1B2C3D4E5F60718293A4B5C6D7E8F9Sec3hash',
];
