// Ingest benchmark: N lines from a real worker process, through the runner (spawn, line split,
// parse, batch) into SQLite, against the raw better-sqlite3 batched-insert ceiling for the same
// rows into the same table, measured in the same run. Prints a ratio (target >= 0.5).
import 'reflect-metadata';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SqliteStore, WorkerRunner, ExecaSpawner } from '@scalpels/core/engine';

const N = Number(process.env.BENCH_LINES ?? 5_000_000);
const BATCH = 8192;
const here = dirname(fileURLToPath(import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-bench-ingest-'));

const schema = {
  series: Object.fromEntries(
    ['bench.a', 'bench.b', 'bench.c', 'bench.d'].map((n) => [
      n,
      { kind: 'counter', unit: 'count', description: n },
    ]),
  ),
};
const parser = {
  line(text) {
    const sp = text.indexOf(' ');
    return { kind: 'sample', series: text.slice(0, sp), value: Number(text.slice(sp + 1)) };
  },
};

async function newTracer(store) {
  const task = await store.createTask({
    name: 'bench',
    labels: {},
    nodes: ['bench'],
    ownerPid: process.pid,
    ownerStart: null,
    target: null,
    startedAt: Date.now(),
  });
  return store.createTracer({
    taskId: task.id,
    tracer: 'bench',
    pluginPackage: 'bench',
    pluginVersion: '0',
    node: 'bench',
    options: {},
    technique: null,
  });
}

async function pipeline() {
  const store = new SqliteStore(join(scratch, 'pipeline.db'));
  const tracer = await newTracer(store);
  const runner = new WorkerRunner(
    new ExecaSpawner(),
    { argv: [process.execPath, join(here, 'workers', 'lines.mjs'), String(N)], mayExit: true },
    parser,
    schema,
    store.recordSink(tracer, schema),
    { batchSize: BATCH },
  );
  const t0 = performance.now();
  await runner.start();
  const outcome = await runner.done;
  const seconds = (performance.now() - t0) / 1000;
  const rows = store.db.prepare('SELECT count(*) AS n FROM samples').get().n;
  await store.close();
  if (outcome.records !== N || rows !== N || outcome.parseErrors !== 0)
    throw new Error(`pipeline lost records: ${JSON.stringify({ outcome, rows })}`);
  return { seconds, rowsPerSecond: N / seconds };
}

async function ceiling() {
  const store = new SqliteStore(join(scratch, 'ceiling.db'));
  const tracer = await newTracer(store);
  const db = store.db;
  const ids = ['bench.a', 'bench.b', 'bench.c', 'bench.d'].map((name) =>
    Number(
      db
        .prepare(
          `INSERT INTO series (tracer_id, name, labels, unit, kind) VALUES (?, ?, '{}', 'count', 'counter') RETURNING id`,
        )
        .get(tracer.id, name).id,
    ),
  );
  const insert = db.prepare('INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?)');
  const writeBatch = db.transaction((from, to, ts) => {
    for (let i = from; i < to; i++) insert.run(ids[i & 3], ts, i);
  });
  const t0 = performance.now();
  for (let i = 0; i < N; i += BATCH) writeBatch(i, Math.min(N, i + BATCH), Date.now());
  const seconds = (performance.now() - t0) / 1000;
  await store.close();
  return { seconds, rowsPerSecond: N / seconds };
}

try {
  const raw = await ceiling();
  const ours = await pipeline();
  const result = {
    benchmark: 'ingest',
    lines: N,
    ceilingRowsPerSecond: Math.round(raw.rowsPerSecond),
    pipelineRowsPerSecond: Math.round(ours.rowsPerSecond),
    ratio: Number((ours.rowsPerSecond / raw.rowsPerSecond).toFixed(3)),
    target: '>= 0.5',
  };
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'ingest.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result));
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
