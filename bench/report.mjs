// Report benchmark: `scalpels report --format json` of a synthetic task holding BENCH_SAMPLES
// (default 10 000 000) samples, against a plain `SELECT count(*), sum(value)` scan of the same
// rows by the sqlite3 CLI, measured in the same run on the same warm file. Prints the ratio
// (target <= 3): the report must be SQL aggregation in the store, not rows loaded into JavaScript.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SqliteStore } from '@scalpels/core/engine';

const N = Number(process.env.BENCH_SAMPLES ?? 10_000_000);
const SERIES = Number(process.env.BENCH_SERIES ?? 200);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
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

const gnuTime = ['/usr/bin/time'].find((p) => which(p));

/** Runs a command; wall time, and CPU time (user + system) when GNU time is there. */
function measure(file, args, opts = {}) {
  const t = process.hrtime.bigint();
  const cpuFile = join(scratch, 'cpu.txt');
  const out = gnuTime
    ? execFileSync(gnuTime, ['-f', '%U %S', '-o', cpuFile, file, ...args], opts)
    : execFileSync(file, args, opts);
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  let cpuMs = NaN;
  if (gnuTime) {
    const [u, sys] = readFileSync(cpuFile, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
    cpuMs = (u + sys) * 1000;
  }
  return { ms, cpuMs, out };
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
    measure(sqlite3, [dbPath, 'SELECT count(*), sum(value) FROM samples;'], { encoding: 'utf8' });
  const report = (format) =>
    measure(
      process.execPath,
      [cli, 'report', taskId, '--format', format, '--store', `sqlite://${dbPath}`],
      { encoding: 'utf8', maxBuffer: 1 << 28, env: { ...process.env, NO_COLOR: '1' } },
    );
  // Warm the page cache for both and check what they count, then alternate the measured runs.
  const [count] = scan().out.trim().split('|').map(Number);
  if (count !== N) throw new Error(`expected ${N} rows, the scan counted ${count}`);
  const json = JSON.parse(report('json').out);
  const points = json.tracers[0].series.reduce((a, s) => a + s.points, 0);
  if (points !== N) throw new Error(`report counted ${points} points, expected ${N}`);
  const baseline = [];
  const scalpels = [];
  for (let i = 0; i < RUNS; i++) {
    baseline.push(scan());
    scalpels.push(report('json'));
  }
  const html = report('html');
  const med = (xs, k) => median(xs.map((x) => x[k]));
  const result = {
    bench: 'report',
    samples: N,
    series: SERIES,
    dbBytes: statSync(dbPath).size,
    buildMs: Math.round(buildMs),
    sqlite3ScanMs: Math.round(med(baseline, 'ms')),
    reportJsonMs: Math.round(med(scalpels, 'ms')),
    ratio: Number((med(scalpels, 'ms') / med(baseline, 'ms')).toFixed(2)),
    target: '<= 3',
    // CPU time (user + system) of the same runs: steadier than wall time on a busy machine.
    sqlite3ScanCpuMs: Math.round(med(baseline, 'cpuMs')),
    reportJsonCpuMs: Math.round(med(scalpels, 'cpuMs')),
    cpuRatio: Number((med(scalpels, 'cpuMs') / med(baseline, 'cpuMs')).toFixed(2)),
    reportHtmlMs: Math.round(html.ms),
    loadAvg1: Number(loadavg()[0].toFixed(1)),
    runs: RUNS,
  };
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'report.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result));
} finally {
  if (!process.env.BENCH_KEEP) rmSync(scratch, { recursive: true, force: true });
  else console.error(`kept ${dbPath}`);
}
