import { describe, expect, it } from 'vitest';
import type { Schema, TraceRecord } from '../api.js';
import type { Store } from './types.js';

// The behaviour every store must have; each store's test file runs it.

const schema: Schema = {
  series: {
    calls: { kind: 'counter', unit: 'count', description: 'calls', labels: ['fn'] },
    rss: { kind: 'gauge', unit: 'bytes', description: 'rss' },
  },
  events: { query: { description: 'a statement', key: 'fingerprint' } },
};

export async function taskWithTracer(store: Store) {
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

export function storeSuite(name: string, open: () => Store): void {
  describe(`${name}: the shared store suite`, () => {
    it('stores batches and aggregates series and events', async () => {
      const store = open();
      const { tracer } = await taskWithTracer(store);
      const sink = store.recordSink(tracer, schema);
      const batch: TraceRecord[] = [];
      for (let i = 1; i <= 100; i++) {
        batch.push({
          kind: 'sample',
          series: 'calls',
          labels: { fn: 'f' },
          value: i,
          ts: 1000 + i,
        });
        batch.push({
          kind: 'sample',
          series: 'calls',
          labels: { fn: 'g' },
          value: 1,
          ts: 1000 + i,
        });
        batch.push({ kind: 'event', type: 'query', key: 'SELECT ?', durationMs: i, ts: 1000 + i });
      }
      batch.push({ kind: 'sample', series: 'rss', value: 42, ts: 5000 });
      batch.push({ kind: 'sample', series: 'rss', value: 7, ts: 6000 });
      await sink.write(batch);
      // Same labels in another key order map to the same series.
      await sink.write([
        { kind: 'sample', series: 'calls', labels: { fn: 'g' }, value: 1, ts: 2000 },
      ]);
      await sink.flush?.();
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
      const store = open();
      const { task } = await taskWithTracer(store);
      expect((await store.findTask(task.id))?.id).toBe(task.id);
      expect((await store.findTask(task.id.slice(0, 17)))?.id).toBe(task.id);
      expect((await store.findTask('t'))?.id).toBe(task.id);
      expect(await store.findTask('nope')).toBeUndefined();
      expect((await store.lastTask())?.id).toBe(task.id);
      await store.close();
    });

    it('journals undo actions until they are marked undone', async () => {
      const store = open();
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

    it('ranks event keys by time, by count or by summed value', async () => {
      const store = open();
      const { tracer } = await taskWithTracer(store);
      const sink = store.recordSink(tracer, schema);
      const ev = (key: string, value: number, durationMs?: number): TraceRecord => ({
        kind: 'event',
        type: 'query',
        key,
        value,
        durationMs,
        ts: 1000,
      });
      await sink.write([
        ev('often', 1),
        ev('often', 1),
        ev('often', 1),
        ev('big', 100),
        ev('slow', 0, 50),
      ]);
      await sink.flush?.();
      const keys = async (by?: 'time' | 'count' | 'value') =>
        (await store.eventSummary(tracer.id, 10, by)).top.map((t) => t.key);
      expect(await keys()).toEqual(['slow', 'often', 'big']);
      expect(await keys('count')).toEqual(['often', 'big', 'slow']);
      expect(await keys('value')).toEqual(['big', 'often', 'slow']);
      expect((await store.eventSummary(tracer.id, 10, 'value')).top[0]).toMatchObject({
        totalValue: 100,
        count: 1,
      });
      await store.close();
    });

    it('keeps tracer state and lists live tracers', async () => {
      const store = open();
      const { task, tracer } = await taskWithTracer(store);
      expect((await store.liveTracers()).map((t) => t.id)).toContain(tracer.id);
      await store.updateTracer(tracer.id, {
        status: 'running',
        workerPid: 123,
        workerStart: 456,
        records: 7,
      });
      await store.updateTracer(tracer.id, { status: 'stopped', exitCode: 0, stoppedAt: 2000 });
      const [row] = await store.listTracers(task.id);
      expect(row).toMatchObject({
        status: 'stopped',
        workerPid: 123,
        workerStart: 456,
        records: 7,
        exitCode: 0,
        stoppedAt: 2000,
        options: { a: 1 },
      });
      expect((await store.liveTracers()).map((t) => t.id)).not.toContain(tracer.id);
      await store.updateTask(task.id, { status: 'stopped', stoppedAt: 3000 });
      expect(await store.findTask(task.id)).toMatchObject({
        status: 'stopped',
        stoppedAt: 3000,
        labels: { env: 'ci' },
      });
      await store.close();
    });
  });
}
