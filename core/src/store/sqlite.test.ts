import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from './sqlite.js';
import { openStore, sqlitePath } from './index.js';
import { storeSuite, taskWithTracer } from './store-suite.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'scalpels-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

storeSuite('sqlite', () => new SqliteStore(join(dir, `s-${++seq}.db`)));
let seq = 0;

describe('SqliteStore', () => {
  it('refuses a file that is not a SQLite database and leaves it untouched', () => {
    const path = join(dir, 'notes.db');
    writeFileSync(path, 'precious text, not a database\n');
    expect(() => new SqliteStore(path)).toThrow(/is not a SQLite database.*nothing was changed/);
    expect(readFileSync(path, 'utf8')).toBe('precious text, not a database\n');
  });

  it('refuses a corrupt database with a one-line error', () => {
    const path = join(dir, 'c.db');
    const store = new SqliteStore(path);
    store.db.close();
    const bytes = readFileSync(path);
    bytes.fill(0xff, 100, 4096); // wreck the schema page but keep the header
    writeFileSync(path, bytes);
    expect(() => new SqliteStore(path)).toThrow(/store .* is (corrupt|not a SQLite)/);
  });

  it('says a database locked by another writer is locked', async () => {
    const path = join(dir, 'l.db');
    const store = new SqliteStore(path);
    const { tracer } = await taskWithTracer(store);
    const Database = createRequire(import.meta.url)('better-sqlite3');
    const other = new Database(path, { timeout: 0 });
    other.exec('BEGIN IMMEDIATE');
    const quick = new SqliteStore(path);
    quick.db.pragma('busy_timeout = 50');
    await expect(quick.updateTracer(tracer.id, { records: 5 })).rejects.toThrow(
      /is locked by another process/,
    );
    other.exec('ROLLBACK');
    other.close();
    await quick.close();
    await store.close();
  });

  it('refuses a store written by a newer schema', () => {
    const path = join(dir, 'n.db');
    const store = new SqliteStore(path);
    store.db.pragma('user_version = 999');
    store.db.close();
    expect(() => new SqliteStore(path)).toThrow(/schema version 999, newer than this scalpels/);
  });

  it('parses store URLs', () => {
    expect(sqlitePath('sqlite:///tmp/a.db')).toBe('/tmp/a.db');
    expect(sqlitePath('/tmp/b.db')).toBe('/tmp/b.db');
    expect(() => openStore('mongodb://x')).toThrow('unsupported store "mongodb"');
  });
});
