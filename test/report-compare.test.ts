import 'reflect-metadata';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteStore, compareTasks, type Comparison } from '@scalpels/core/engine';
import { ok, pyWork, scalpels, scratchDir } from './report-helpers.js';

const dir = scratchDir('scalpels-report-compare-');

describe('scalpels compare of two real runs, the second doing twice the work', () => {
  it('shows the doubled system call counts as ~2.0x, in json, table and html', async () => {
    const store = `sqlite://${join(dir, 'real.db')}`;
    const run = (name: string, n: number) =>
      ok([
        'run',
        '-t',
        'syscalls,proc',
        '--name',
        name,
        '--store',
        store,
        '--format',
        'none',
        '--',
        ...pyWork(n, 1_000_000),
      ]);
    await run('once', 40_000);
    await run('twice', 80_000);
    const c = JSON.parse(
      await ok(['compare', 'once', 'twice', '--format', 'json', '--store', store]),
    ) as Comparison;
    expect(c.format).toBe('scalpels.compare/v1');
    expect(c.a.name).toBe('once');
    expect(c.b.name).toBe('twice');
    // Pids differ between runs: series are matched without them.
    const getppid = c.series.find(
      (s) =>
        s.tracer === 'syscalls' &&
        s.name === 'syscalls.calls' &&
        s.labels.syscall === 'getppid' &&
        s.labels.comm === 'python3',
    );
    expect(getppid, 'syscalls.calls getppid of python3 in both runs').toBeDefined();
    expect(getppid!.a!.value).toBeGreaterThanOrEqual(40_000);
    expect(getppid!.ratio!).toBeGreaterThan(1.95);
    expect(getppid!.ratio!).toBeLessThan(2.05);
    expect(getppid!.labels.pid).toBeUndefined();

    const table = await ok(['compare', 'once', 'twice', '--store', store]);
    const line = table.split('\n').find((l) => /syscalls\.calls .*syscall=getppid/.test(l));
    expect(line).toMatch(/\b2\.0[0-4]x\b|\b1\.9[5-9]x\b/);

    const html = await ok(['compare', 'once', 'twice', '--format', 'html', '--store', store]);
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toMatch(/<script|<link|src=/i);
    expect(html).toContain('syscall=getppid');
  });

  it('refuses an unknown task in one line', async () => {
    const r = await scalpels([
      'compare',
      'nope',
      'nada',
      '--store',
      `sqlite://${join(dir, 'x.db')}`,
    ]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toMatch(/^scalpels: no task "nope"/);
  });
});

describe('compare flags changes beyond the interval-to-interval noise (synthetic store)', () => {
  async function task(store: SqliteStore, name: string, values: number[], gauge: number[]) {
    const t0 = 1_700_000_000_000 + values.length * 1000 * (name === 'a' ? 0 : 100);
    const task = await store.createTask({
      name,
      labels: {},
      nodes: ['n'],
      ownerPid: null,
      ownerStart: null,
      target: null,
      startedAt: t0,
    });
    const tr = await store.createTracer({
      taskId: task.id,
      tracer: 'synthetic',
      pluginPackage: 'x',
      pluginVersion: '0',
      node: 'n',
      options: {},
      technique: null,
    });
    const sink = store.recordSink(tr, {
      series: {
        ops: { kind: 'counter', unit: 'count', description: '' },
        level: { kind: 'gauge', unit: 'bytes', description: '' },
      },
    });
    sink.write([
      ...values.map((v, i) => ({
        kind: 'sample' as const,
        series: 'ops',
        value: v,
        ts: t0 + i * 1000,
      })),
      ...gauge.map((v, i) => ({
        kind: 'sample' as const,
        series: 'level',
        value: v,
        ts: t0 + i * 1000,
      })),
    ]);
    const end = t0 + values.length * 1000;
    await store.updateTracer(tr.id, { status: 'stopped', startedAt: t0, stoppedAt: end });
    await store.updateTask(task.id, { status: 'stopped', stoppedAt: end });
    return (await store.findTask(task.id))!;
  }
  // Deterministic noise: ±5% around the level.
  const noisy = (level: number, n: number) =>
    Array.from({ length: n }, (_, i) => level * (1 + 0.05 * Math.sin(i * 1.7)));

  it('a doubled rate is significant; a 1% change is within the noise', async () => {
    const store = new SqliteStore(join(dir, 'synthetic.db'));
    try {
      const a = await task(store, 'a', noisy(100, 30), noisy(1000, 30));
      const b = await task(store, 'b', noisy(200, 30), noisy(1010, 30));
      const c = await compareTasks(store, a, b);
      const ops = c.series.find((s) => s.name === 'ops')!;
      expect(ops.ratio!).toBeCloseTo(2, 1);
      expect(ops.noise).toBeGreaterThan(0);
      expect(ops.significant).toBe(true);
      const level = c.series.find((s) => s.name === 'level')!;
      expect(level.ratio!).toBeCloseTo(1.01, 2);
      expect(level.significant).toBe(false);
      // Fewer than 3 points: the noise cannot be estimated and nothing is claimed.
      const a2 = await task(store, 'a2', [5, 6], [1, 1]);
      const b2 = await task(store, 'b2', [50, 60], [1, 1]);
      const c2 = await compareTasks(store, a2, b2);
      expect(c2.series.find((s) => s.name === 'ops')!.significant).toBeNull();
    } finally {
      await store.close();
    }
  });
});
