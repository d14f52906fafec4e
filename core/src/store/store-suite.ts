import { describe, expect, it } from 'vitest';
import type { Schema, TraceRecord } from '../api.js';
import type { UndoAction } from '../api.js';
import { Leases } from '../leases.js';
import type { LeaseRestore, Store } from './types.js';

async function waitFor(cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

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
        'n1',
      );
      const [entry] = await store.pendingJournal();
      expect(entry).toMatchObject({
        plugin: 'demo',
        action: { kind: 'setting', data: { general_log: 'OFF' } },
        options: { a: 1 },
        node: 'n1',
      });
      expect((await store.tracer(tracer.id))?.tracer).toBe('demo');
      expect(await store.tracer(tracer.id + 1000)).toBeUndefined();
      await store.markUndone(entry!.id);
      expect(await store.pendingJournal()).toEqual([]);
      await store.close();
    });

    it('locks a lease key for one owner at a time, until it expires or is released', async () => {
      const store = open();
      const key = `shared:test/${Math.random()}`;
      expect(await store.tryLockLease(key, 'a', 60_000)).toBe(true);
      expect(await store.tryLockLease(key, 'b', 60_000)).toBe(false);
      expect(await store.renewLeaseLock(key, 'b', 60_000)).toBe(false);
      expect(await store.renewLeaseLock(key, 'a', 60_000)).toBe(true);
      await store.unlockLease(key, 'b'); // not b's: nothing happens
      expect(await store.tryLockLease(key, 'b', 60_000)).toBe(false);
      await store.unlockLease(key, 'a');
      expect(await store.tryLockLease(key, 'b', 1)).toBe(true);
      // b's lock expires: a takes it over (a crashed locker blocks others for its TTL only).
      await waitFor(async () => store.tryLockLease(key, 'a', 60_000));
      await store.unlockLease(key, 'a');
      await store.close();
    });

    it('counts lease holders: the first changes, the last restores, others only count', async () => {
      const store = open();
      const leases = new Leases(store, { waitMs: 10_000 });
      const key = `shared:server/${Math.random()}/setting`;
      const changes: string[] = [];
      const restored: unknown[] = [];
      const change = (tag: string) => async (journal: (a: UndoAction) => Promise<void>) => {
        changes.push(tag);
        await journal({ kind: 'k', data: { was: 'off', tag }, description: 'was off' });
      };
      const restore = async (r: LeaseRestore) => void restored.push(r.action.data);
      const first = { plugin: 'demo', options: { a: 1 } };
      // Three holders start at once, on two nodes: exactly one changes.
      const grants = await Promise.all([
        leases.acquire(key, { tracerId: 1, node: 'n1' }, first, change('1')),
        leases.acquire(key, { tracerId: 2, node: 'n1' }, first, change('2')),
        leases.acquire(key, { tracerId: 3, node: 'n2' }, first, change('3')),
      ]);
      expect(grants.filter((g) => g.first)).toHaveLength(1);
      expect(changes).toHaveLength(1);
      const row = await store.getLease(key);
      expect(row?.holders.map((h) => h.tracerId).sort()).toEqual([1, 2, 3]);
      expect(row?.restores).toMatchObject([{ plugin: 'demo', options: { a: 1 } }]);
      expect((await store.listLeases()).map((l) => l.key)).toContain(key);
      // Releasing twice is harmless; the last holder restores once.
      await leases.release(key, { tracerId: 2, node: 'n1' }, restore);
      await leases.release(key, { tracerId: 2, node: 'n1' }, restore);
      await leases.release(key, { tracerId: 1, node: 'n1' }, restore);
      expect(restored).toEqual([]);
      expect(await leases.release(key, { tracerId: 3, node: 'n2' }, restore)).toEqual({
        holders: 0,
        restored: 1,
      });
      expect(restored).toEqual([{ was: 'off', tag: changes[0] }]);
      expect(await store.getLease(key)).toBeUndefined();
      await store.close();
    });

    it('keeps a lease whose restore failed, and restores it on the next release', async () => {
      const store = open();
      const leases = new Leases(store, { waitMs: 10_000 });
      const key = `node:n1:tracefs/${Math.random()}`;
      const first = { plugin: 'demo', options: {} };
      await leases.acquire(key, { tracerId: 1, node: 'n1' }, first, async (journal) => {
        await journal({ kind: 'a', data: 1, description: 'first' });
        await journal({ kind: 'b', data: 2, description: 'second' });
      });
      const order: string[] = [];
      await expect(
        leases.release(key, { tracerId: 1, node: 'n1' }, async (r) => {
          order.push(r.action.kind);
          if (r.action.kind === 'a') throw new Error('server away');
        }),
      ).rejects.toThrow('server away');
      expect(await store.getLease(key)).toMatchObject({
        holders: [],
        restores: [{ action: { kind: 'a' } }],
      });
      // A new holder re-applies without journaling the changed state as the original.
      let reapplied = 0;
      const states: boolean[] = [];
      const g = await leases.acquire(
        key,
        { tracerId: 2, node: 'n1' },
        first,
        async (journal, state) => {
          reapplied++;
          states.push(state.reapplying);
          await journal({ kind: 'c', data: 3, description: 'changed state' });
        },
      );
      expect(g.first).toBe(true);
      expect(reapplied).toBe(1);
      // told so: the state it reads may be the failed holder's change, not another party's
      expect(states).toEqual([true]);
      await leases.release(
        key,
        { tracerId: 2, node: 'n1' },
        async (r) => void order.push(r.action.kind),
      );
      expect(order).toEqual(['b', 'a', 'a']);
      expect(await store.getLease(key)).toBeUndefined();
      await store.close();
    });

    it('drops dead holders: a lease held only by the dead is taken over, keeping its original state', async () => {
      const store = open();
      const leases = new Leases(store, { waitMs: 10_000 });
      const first = { plugin: 'demo', options: {} };
      const dead = async (h: { tracerId: number }) => h.tracerId === 1;
      const journaled = (tag: string) => async (journal: (a: UndoAction) => Promise<void>) =>
        journal({ kind: tag, data: null, description: tag });
      // Died after journaling its original state: the next holder re-applies, journals nothing.
      const k1 = `shared:after/${Math.random()}`;
      await leases.acquire(k1, { tracerId: 1, node: 'n1' }, first, journaled('original'));
      await leases.acquire(k1, { tracerId: 2, node: 'n1' }, first, journaled('changed'), dead);
      expect((await store.getLease(k1))?.holders.map((h) => h.tracerId)).toEqual([2]);
      expect((await store.getLease(k1))?.restores.map((r) => r.action.kind)).toEqual(['original']);
      // Died before journaling (nothing changed yet): the next holder journals as a first one.
      const k2 = `shared:before/${Math.random()}`;
      const states: boolean[] = [];
      await leases.acquire(k2, { tracerId: 1, node: 'n1' }, first, async (_j, state) => {
        states.push(state.reapplying);
      });
      await leases.acquire(
        k2,
        { tracerId: 3, node: 'n1' },
        first,
        async (journal, state) => {
          states.push(state.reapplying);
          await journaled('original')(journal);
        },
        dead,
      );
      expect(states).toEqual([false, false]);
      expect((await store.getLease(k2))?.restores.map((r) => r.action.kind)).toEqual(['original']);
      // A release drops the dead too: the live holder leaving last restores.
      const k3 = `shared:release/${Math.random()}`;
      await leases.acquire(k3, { tracerId: 1, node: 'n1' }, first, journaled('original'));
      await leases.acquire(k3, { tracerId: 4, node: 'n1' }, first, journaled('unused'));
      const restored: string[] = [];
      const restore = async (r: LeaseRestore) => void restored.push(r.action.kind);
      await leases.release(k3, { tracerId: 4, node: 'n1' }, restore, dead);
      expect(restored).toEqual(['original']);
      for (const k of [k1, k2])
        await leases.release(k, { tracerId: 9, node: 'n1' }, restore, async () => true);
      expect(await store.getLease(k1)).toBeUndefined();
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
