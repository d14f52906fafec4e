import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Schema, TraceRecord } from '../api.js';
import { SqliteStore } from './sqlite.js';
import { openStore, sqlitePath } from './index.js';

const schema: Schema = {
  series: {
    calls: { kind: 'counter', unit: 'count', description: 'calls', labels: ['fn'] },
    rss: { kind: 'gauge', unit: 'bytes', description: 'rss' },
  },
  events: { query: { description: 'a statement', key: 'fingerprint' } },
};

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'scalpels-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function taskWithTracer(store: SqliteStore) {
  const task = await store.createTask({
    name: 't',
    labels: { env: 'ci' },
    nodes: ['n1'],
    ownerPid: 1,
    ownerStart: 1,
    target: 'x',
    startedAt: 1000,
  });
  const tracer = await store.createTracer({
    taskId: task.id,
    tracer: 'demo',
    pluginPackage: 'p',
    pluginVersion: '1.0.0',
    node: 'n1',
    options: { a: 1 },
    technique: null,
  });
  return { task, tracer };
}

describe('SqliteStore', () => {
  it('stores batches and aggregates series and events in SQL', async () => {
    const store = new SqliteStore(join(dir, 's.db'));
    const { tracer } = await taskWithTracer(store);
    const sink = store.recordSink(tracer, schema);
    const batch: TraceRecord[] = [];
    for (let i = 1; i <= 100; i++) {
      batch.push({ kind: 'sample', series: 'calls', labels: { fn: 'f' }, value: i, ts: 1000 + i });
      batch.push({ kind: 'sample', series: 'calls', labels: { fn: 'g' }, value: 1, ts: 1000 + i });
      batch.push({ kind: 'event', type: 'query', key: 'SELECT ?', durationMs: i, ts: 1000 + i });
    }
    batch.push({ kind: 'sample', series: 'rss', value: 42, ts: 5000 });
    batch.push({ kind: 'sample', series: 'rss', value: 7, ts: 6000 });
    sink.write(batch);
    // Same labels in another key order map to the same series.
    sink.write([{ kind: 'sample', series: 'calls', labels: { fn: 'g' }, value: 1, ts: 2000 }]);
    const s = await store.seriesSummaries(tracer.id);
    const f = s.find((x) => x.labels.fn === 'f')!;
    expect(f).toMatchObject({
      name: 'calls',
      kind: 'counter',
      unit: 'count',
      points: 100,
      sum: 5050,
      min: 1,
      max: 100,
      last: 100,
    });
    expect(s.find((x) => x.labels.fn === 'g')).toMatchObject({ points: 101, sum: 101 });
    expect(s.find((x) => x.name === 'rss')).toMatchObject({
      kind: 'gauge',
      last: 7,
      max: 42,
      mean: 24.5,
    });
    const ev = await store.eventSummary(tracer.id, 10);
    expect(ev.count).toBe(100);
    expect(ev.top[0]).toMatchObject({
      key: 'SELECT ?',
      count: 100,
      totalMs: 5050,
      meanMs: 50.5,
      p95Ms: 95,
    });
    await store.close();
  });

  it('finds tasks by id, prefix and name, and keeps the last', async () => {
    const store = new SqliteStore(join(dir, 's.db'));
    const { task } = await taskWithTracer(store);
    expect((await store.findTask(task.id))?.id).toBe(task.id);
    expect((await store.findTask(task.id.slice(0, 17)))?.id).toBe(task.id);
    expect((await store.findTask('t'))?.id).toBe(task.id);
    expect(await store.findTask('nope')).toBeUndefined();
    expect((await store.lastTask())?.id).toBe(task.id);
    await store.close();
  });

  it('journals undo actions until they are marked undone', async () => {
    const store = new SqliteStore(join(dir, 's.db'));
    const { tracer } = await taskWithTracer(store);
    await store.journal(
      tracer.id,
      'demo',
      { kind: 'setting', data: { general_log: 'OFF' }, description: 'general_log was OFF' },
      { a: 1 },
    );
    const [entry] = await store.pendingJournal();
    expect(entry).toMatchObject({
      plugin: 'demo',
      action: { kind: 'setting', data: { general_log: 'OFF' } },
      options: { a: 1 },
    });
    await store.markUndone(entry!.id);
    expect(await store.pendingJournal()).toEqual([]);
    await store.close();
  });

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
