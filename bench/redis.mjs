// Redis store benchmark: records per second through the Redis store's sink (one XADD per batch of
// 8192 records, compact encoding) against redis-benchmark's XADD rate and against one XADD per
// record with ioredis, all measured in this run on the local Redis. Target: >= 1M records/s.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { RedisStore } from '@scalpels/core/engine';

const here = dirname(fileURLToPath(import.meta.url));
const N = Number(process.env.BENCH_RECORDS ?? 2_000_000);
const BATCH = 8192;
const prefix = `scalpels-bench-${randomBytes(3).toString('hex')}:`;
const url = `redis://127.0.0.1:6379/0?prefix=${prefix}`;
const schema = {
  series: { 'bench.value': { kind: 'counter', unit: 'count', description: 'bench' } },
};
const labels = [{ cpu: '0' }, { cpu: '1' }, { cpu: '2' }, { cpu: '3' }];

// Baseline 1: redis-benchmark's XADD rate (pipelined, like our batches).
const out = execFileSync(
  'redis-benchmark',
  ['-q', '-n', '200000', '-P', '16', 'XADD', `${prefix}rb`, '*', 'f', 'v'],
  { encoding: 'utf8' },
);
const benchRate = Number(/([\d.]+) requests per second/.exec(out)?.[1] ?? NaN);

const store = new RedisStore(url);
await store.listTasks(); // connect
const task = await store.createTask({
  name: 'bench',
  labels: {},
  nodes: ['bench'],
  ownerPid: null,
  ownerStart: null,
  target: null,
  startedAt: Date.now(),
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

// Baseline 2: one XADD per record (what a naive store does), on a smaller count.
const naiveN = 100_000;
let t0 = performance.now();
for (let i = 0; i < naiveN; i += 1000) {
  const p = store.redis.pipeline();
  for (let k = 0; k < 1000; k++)
    p.xadd(`${prefix}naive`, '*', 's', 'bench.value', 'v', String(i + k));
  await p.exec();
}
const naiveRate = naiveN / ((performance.now() - t0) / 1000);

// Scalpels: the store's sink, as the runner drives it.
const sink = store.recordSink(tracer, schema);
t0 = performance.now();
for (let i = 0; i < N; i += BATCH) {
  const batch = [];
  const ts = Date.now();
  for (let k = i; k < Math.min(N, i + BATCH); k++)
    batch.push({ kind: 'sample', series: 'bench.value', labels: labels[k & 3], value: k, ts });
  await sink.write(batch);
}
await sink.flush();
const seconds = (performance.now() - t0) / 1000;
const entries = await store.redis.xlen(store.key.records(task.id));
const keys = await store.redis.keys(`${prefix}*`);
if (keys.length) await store.redis.del(...keys);
await store.close();
if (entries !== Math.ceil(N / BATCH))
  throw new Error(`expected ${Math.ceil(N / BATCH)} entries, got ${entries}`);

const result = {
  benchmark: 'redis-store',
  records: N,
  scalpelsRecordsPerSecond: Math.round(N / seconds),
  redisBenchmarkXaddPerSecond: Math.round(benchRate),
  ioredisOneXaddPerRecordPerSecond: Math.round(naiveRate),
  ratioToRedisBenchmark: Number((N / seconds / benchRate).toFixed(2)),
  target: '>= 1000000 records/s',
};
mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(join(here, 'results', 'redis.json'), `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result));
