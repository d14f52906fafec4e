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
        // Latency histograms too: compare shows their buckets as counts.
        '--set',
        'syscalls.latency=true',
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

    // Histogram buckets are counts (the bounds are nanoseconds): never shown in the series' unit.
    const buckets = table.split('\n').filter((l) => /syscalls\.latency /.test(l));
    expect(buckets.length).toBeGreaterThan(0);
    for (const l of buckets) {
      expect(l).toMatch(/ count +histogram /);
      expect(l).not.toMatch(/\d (ms|ns|µs|s)\b/);
    }
    // --ops A,B: the second run did twice the operations, so per operation nothing changed.
    const perOp = JSON.parse(
      await ok(['compare', 'once', 'twice', '--ops', '4,8', '--format', 'json', '--store', store]),
    ) as Comparison;
    expect(perOp.ops).toEqual({ a: 4, b: 8 });
    const g = perOp.series.find(
      (s) =>
        s.name === 'syscalls.calls' &&
        s.labels.syscall === 'getppid' &&
        s.labels.comm === 'python3',
    )!;
    expect(g.a!.perOp).toBeCloseTo(g.a!.value / 4, 9);
    expect(g.b!.perOp! / g.a!.perOp!).toBeGreaterThan(0.97);
    expect(g.b!.perOp! / g.a!.perOp!).toBeLessThan(1.03);
    expect(g.deltaPerOp).toBeCloseTo(g.b!.perOp! - g.a!.perOp!, 6);
    const perOpTable = await ok(['compare', 'once', 'twice', '--ops', '4,8', '--store', store]);
    expect(perOpTable).toContain('A (/op)');
    expect(perOpTable.split('\n').find((l) => /syscalls\.calls .*syscall=getppid/.test(l))).toMatch(
      /\b(1\.0[0-3]|0\.9[7-9])x\b/,
    );
    const bad = await scalpels(['compare', 'once', 'twice', '--ops', '0', '--store', store]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/--ops 0: expected N or A,B/);

    const html = await ok(['compare', 'once', 'twice', '--format', 'html', '--store', store]);
    expect(html).toMatch(/^<!doctype html>/);
    // The tables first, then the charts: uPlot and the page script inlined (report-html.test.ts
    // opens the page in Chromium), nothing fetched.
    expect(html).not.toMatch(/<link|src=/i);
    expect(html.match(/<script>/g)).toHaveLength(2);
    expect(html).toContain('syscall=getppid');
    expect(html.indexOf('syscall=getppid')).toBeLessThan(html.indexOf('<h2 id="timelines">'));
    expect(html.indexOf('<h2 id="timelines">')).toBeLessThan(html.indexOf('<h2 id="histograms">'));
    expect(html).toContain('<a href="#timelines">timelines</a> · <a href="#histograms">');
    // Histogram buckets are counts there too.
    const histRows = [
      ...html.matchAll(/<td>histogram<\/td><td class="n">([^<]*)<\/td><td class="n">([^<]*)</g),
    ];
    expect(histRows.length).toBeGreaterThan(0);
    for (const [, a, b] of histRows) expect(`${a} ${b}`).not.toMatch(/\d (ms|ns|µs|s)\b/);
    // --ops A,B: per operation, twice the work in twice the operations is ~1x.
    const perOpHtml = await ok([
      'compare',
      'once',
      'twice',
      '--ops',
      '4,8',
      '--format',
      'html',
      '--store',
      store,
    ]);
    expect(perOpHtml).toContain('<th>A (/op)</th>');
    const row = perOpHtml
      .split('</tr>')
      .find(
        (r) =>
          r.includes('<td>syscalls.calls</td>') &&
          r.includes('comm=python3') &&
          r.includes('syscall=getppid'),
      );
    expect(row).toMatch(/>(1\.0[0-3]|0\.9[7-9])x</);
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
