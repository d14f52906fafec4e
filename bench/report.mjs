// Report benchmark: `scalpels report --format json` of a synthetic task holding BENCH_SAMPLES
// (default 10 000 000) samples, against a plain `SELECT count(*), sum(value)` scan of the same
// rows by the sqlite3 CLI, measured in the same run on the same warm file. Prints the ratio
// (target <= 3): the report must be SQL aggregation in the store, not rows loaded into JavaScript.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SqliteStore } from '@scalpels/core/engine';

const N = Number(process.env.BENCH_SAMPLES ?? 10_000_000);
const SERIES = Number(process.env.BENCH_SERIES ?? 200);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'cli', 'dist', 'main.js');
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-bench-report-'));
const dbPath = join(scratch, 'report.db');

function which(bin) {
  try {
    return execFileSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function time(fn) {
  const t = process.hrtime.bigint();
  const out = fn();
  return { ms: Number(process.hrtime.bigint() - t) / 1e6, out };
}

async function build() {
  const store = new SqliteStore(dbPath);
  const t0 = Date.UTC(2026, 10, 26, 12, 0, 0);
  const perSeries = Math.ceil(N / SERIES);
  const stepMs = 100;
  const task = await store.createTask({
    name: 'bench-10M',
    labels: {},
    nodes: ['bench'],
    ownerPid: null,
    ownerStart: null,
    target: 'system-wide',
    startedAt: t0,
  });
  const tracer = await store.createTracer({
    taskId: task.id,
    tracer: 'bench',
    pluginPackage: 'bench',
    pluginVersion: '0',
    node: 'bench',
    options: {},
    technique: null,
  });
  const db = store.db;
  const insertSeries = db.prepare(
    `INSERT INTO series (tracer_id, name, labels, unit, kind) VALUES (?, ?, ?, ?, ?) RETURNING id`,
  );
  // Rows generated inside SQLite, series by series (the order the index likes, like a real
  // ingest that batches per interval would approach after a checkpoint).
  const fill = db.prepare(
    `INSERT INTO samples (series_id, ts, value)
     WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < ? - 1)
     SELECT ?, ? + i * ?, (i * 7919 + ?) % 1000 FROM c`,
  );
  let left = N;
  db.transaction(() => {
    for (let s = 0; s < SERIES && left > 0; s++) {
      const n = Math.min(perSeries, left);
      left -= n;
      const kind = s % 4 === 3 ? 'gauge' : 'counter';
      const { id } = insertSeries.get(
        tracer.id,
        `bench.series${s % 20}`,
        JSON.stringify({ cpu: String(Math.floor(s / 20)) }),
        kind === 'gauge' ? 'bytes' : 'count',
        kind,
      );
      fill.run(n, id, t0, stepMs, s);
    }
  })();
  const end = t0 + perSeries * stepMs;
  await store.updateTracer(tracer.id, {
    status: 'stopped',
    startedAt: t0,
    stoppedAt: end,
    records: N,
  });
  await store.updateTask(task.id, { status: 'stopped', stoppedAt: end });
  db.pragma('wal_checkpoint(TRUNCATE)');
  await store.close();
  return task.id;
}

try {
  const sqlite3 = which('sqlite3');
  if (!sqlite3) throw new Error('sqlite3 CLI not found (apt-get install -y sqlite3)');
  const t = performance.now();
  const taskId = await build();
  const buildMs = performance.now() - t;
  const scan = () =>
    execFileSync(sqlite3, [dbPath, 'SELECT count(*), sum(value) FROM samples;'], {
      encoding: 'utf8',
    });
  const report = (format) =>
    execFileSync(
      process.execPath,
      [cli, 'report', taskId, '--format', format, '--store', `sqlite://${dbPath}`],
      { encoding: 'utf8', maxBuffer: 1 << 28, env: { ...process.env, NO_COLOR: '1' } },
    );
  // Warm the page cache for both, then alternate the measured runs.
  const [count] = scan().trim().split('|').map(Number);
  if (count !== N) throw new Error(`expected ${N} rows, the scan counted ${count}`);
  const json = JSON.parse(report('json'));
  const points = json.tracers[0].series.reduce((a, s) => a + s.points, 0);
  if (points !== N) throw new Error(`report counted ${points} points, expected ${N}`);
  const baseline = [];
  const scalpels = [];
  for (let i = 0; i < RUNS; i++) {
    baseline.push(time(scan).ms);
    scalpels.push(time(() => report('json')).ms);
  }
  const html = time(() => report('html')).ms;
  const result = {
    bench: 'report',
    samples: N,
    series: SERIES,
    dbBytes: statSync(dbPath).size,
    buildMs: Math.round(buildMs),
    sqlite3ScanMs: Math.round(median(baseline)),
    reportJsonMs: Math.round(median(scalpels)),
    reportHtmlMs: Math.round(html),
    ratio: Number((median(scalpels) / median(baseline)).toFixed(2)),
    target: '<= 3',
    runs: RUNS,
  };
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'report.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result));
} finally {
  if (!process.env.BENCH_KEEP) rmSync(scratch, { recursive: true, force: true });
  else console.error(`kept ${dbPath}`);
}
