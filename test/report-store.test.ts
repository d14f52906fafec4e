import 'reflect-metadata';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  SqliteStore,
  SQLITE_SCHEMA_VERSION,
  buildReport,
  buildTimeline,
} from '@scalpels/core/engine';
import { scratchDir } from './report-helpers.js';

const dir = scratchDir('scalpels-report-store-');
let n = 0;
const fresh = () => new SqliteStore(join(dir, `s${++n}.db`));

const T0 = 1_800_000_000_000;

async function seed(store: SqliteStore, seconds = 10) {
  const task = await store.createTask({
    name: 'seed',
    labels: {},
    nodes: ['n'],
    ownerPid: null,
    ownerStart: null,
    target: null,
    startedAt: T0,
  });
  const tr = await store.createTracer({
    taskId: task.id,
    tracer: 't',
    pluginPackage: 'p',
    pluginVersion: '1',
    node: 'n',
    options: {},
    technique: null,
  });
  const sink = store.recordSink(tr, {
    series: {
      ops: { kind: 'counter', unit: 'count', description: '', labels: ['pid', 'op'] },
      rss: { kind: 'gauge', unit: 'bytes', description: '' },
    },
  });
  const records = [];
  // Every 100 ms: 5 reads and 1 write per point (50 reads/s, 10 writes/s); rss grows 1 KiB/s.
  for (let i = 0; i < seconds * 10; i++) {
    const ts = T0 + i * 100;
    records.push(
      { kind: 'sample' as const, series: 'ops', labels: { pid: '1', op: 'read' }, value: 5, ts },
      { kind: 'sample' as const, series: 'ops', labels: { pid: '1', op: 'write' }, value: 1, ts },
      { kind: 'sample' as const, series: 'rss', value: 1024 * (i / 10), ts },
    );
  }
  sink.write(records);
  const end = T0 + seconds * 1000;
  await store.updateTracer(tr.id, { status: 'stopped', startedAt: T0, stoppedAt: end });
  await store.updateTask(task.id, { status: 'stopped', stoppedAt: end });
  return { task: (await store.findTask(task.id))!, tracer: tr };
}

describe('store queries behind the reports (SQLite)', () => {
  it('timeline buckets are per-series SQL aggregates: counters as sums per bucket, exact', async () => {
    const store = fresh();
    try {
      const { tracer } = await seed(store);
      const tl = await store.seriesTimeline(tracer.id, T0, 1000);
      const read = tl.find((s) => s.name === 'ops' && s.labels.op === 'read')!;
      expect(read.buckets).toHaveLength(10);
      expect(read.buckets.map((b) => b.ts)).toEqual(
        Array.from({ length: 10 }, (_, i) => T0 + i * 1000),
      );
      for (const b of read.buckets) expect(b).toMatchObject({ sum: 50, count: 10, min: 5, max: 5 });
      const rss = tl.find((s) => s.name === 'rss')!;
      expect(rss.buckets[3]).toMatchObject({ count: 10, min: 3 * 1024, max: 3.9 * 1024 });
      // Points before the start and after the last bucket fold into the first and last buckets.
      const coarse = await store.seriesTimeline(tracer.id, T0 + 500, 4000);
      const all = coarse.find((s) => s.name === 'ops' && s.labels.op === 'write')!;
      expect(all.buckets.reduce((a, b) => a + b.count, 0)).toBe(100);
    } finally {
      await store.close();
    }
  });

  it('the HTML timeline turns counters into rates per second with their unit', async () => {
    const store = fresh();
    try {
      const { task } = await seed(store);
      const report = await buildReport(store, task);
      const tl = await buildTimeline(store, task, report, { buckets: 10 });
      const ops = tl.charts.find((c) => c.name === 'ops')!;
      expect(ops.unit).toBe('count/s');
      expect(ops.stepMs).toBe(1000);
      const read = ops.lines.find((l) => l.labels.op === 'read')!;
      for (const [, v] of read.points) expect(v).toBeCloseTo(50, 9);
      expect(read.weight).toBe(500);
      // Breakdown tables need 3 keys or more: read and write are only 2.
      expect(tl.tops).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('series ranges and summaries keep every double exact', async () => {
    const store = fresh();
    try {
      const { tracer } = await seed(store);
      const sink = store.recordSink(tracer, {
        series: { x: { kind: 'gauge', unit: 'ms', description: '' } },
      });
      const values = [0.1, 0.2, 1e-17, 123456789.12345679, -2.5e300, Infinity];
      sink.write(
        values.map((value, i) => ({ kind: 'sample' as const, series: 'x', value, ts: T0 + i })),
      );
      const x = (await store.seriesSummaries(tracer.id)).find((s) => s.name === 'x')!;
      expect(x.points).toBe(values.length);
      expect(x.min).toBe(-2.5e300);
      expect(x.max).toBe(Infinity);
      expect(x.last).toBe(Infinity);
      const r = (await store.seriesRange(tracer.id, T0, T0 + 4)).find((s) => s.name === 'x')!;
      expect(r.points).toBe(4);
      expect(r.sum).toBe(0.1 + 0.2 + 1e-17 + 123456789.12345679);
      expect(r.sumSquares).toBeCloseTo(123456789.12345679 ** 2, -2);
    } finally {
      await store.close();
    }
  });

  it('markers are kept per task in time order, and split the task into phases', async () => {
    const store = fresh();
    const { task } = await seed(store);
    try {
      expect(SQLITE_SCHEMA_VERSION).toBeGreaterThanOrEqual(3);
      await store.addMarker({ taskId: task.id, ts: T0 + 5000, text: 'delete', node: 'n' });
      await store.addMarker({ taskId: task.id, ts: T0 + 1000, text: 'boot 50 VMs', node: null });
      expect((await store.listMarkers(task.id)).map((m) => m.text)).toEqual([
        'boot 50 VMs',
        'delete',
      ]);
      const report = await buildReport(store, task);
      expect(report.markers.map((m) => m.ts)).toEqual([
        new Date(T0 + 1000).toISOString(),
        new Date(T0 + 5000).toISOString(),
      ]);
      // Phases between markers: the counter totals split exactly at the marker times.
      const tl = await buildTimeline(store, task, report);
      expect(tl.phases.map((p) => p.label)).toEqual(['(start)', 'boot 50 VMs', 'delete']);
      const ops = tl.phases.map((p) => p.totals.find((t) => t.name === 'ops')!.sum);
      expect(ops).toEqual([60, 240, 300]);
    } finally {
      await store.close();
    }
  });
});
