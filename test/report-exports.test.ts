import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { cli, ok, pyWork, scalpels, scratchDir } from './report-helpers.js';

const dir = scratchDir('scalpels-report-exports-');
const store = `sqlite://${join(dir, 'store.db')}`;

interface Report {
  task: { id: string };
  tracers: {
    tracer: string;
    records: number;
    series: {
      name: string;
      kind: string;
      unit: string;
      labels: Record<string, string>;
      sum: number;
      last: number;
    }[];
  }[];
}

let report: Report;
beforeAll(async () => {
  await ok([
    'run',
    '-t',
    'proc,syscalls',
    '--set',
    'proc.interval=200ms',
    '--store',
    store,
    '--format',
    'none',
    '--',
    ...pyWork(5000, 2_000_000),
  ]);
  report = JSON.parse(
    await ok(['report', '--last', '--format', 'json', '--store', store]),
  ) as Report;
});

describe('report exports of a real task', () => {
  it('jsonl has the task, each tracer and every stored record, once', async () => {
    const text = await ok(['report', '--last', '--format', 'jsonl', '--store', store]);
    const lines = text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ record: 'task', id: report.task.id });
    const tracers = lines.filter((l) => l.record === 'tracer');
    expect(tracers.map((t) => t.tracer)).toEqual(report.tracers.map((t) => t.tracer));
    for (const tr of report.tracers) {
      const id = tracers.find((t) => t.tracer === tr.tracer)!.tracerId;
      const records = lines.filter(
        (l) => (l.record === 'sample' || l.record === 'event') && l.tracerId === id,
      );
      expect(records.length, tr.tracer).toBe(tr.records);
    }
    // The samples of a series add up to the report's sum.
    const cpu = report.tracers[0]!.series.find((s) => s.name === 'proc.cpu.user')!;
    const sum = lines
      .filter(
        (l) =>
          l.record === 'sample' &&
          l.series === 'proc.cpu.user' &&
          JSON.stringify(l.labels) === JSON.stringify(cpu.labels),
      )
      .reduce((a, l) => a + (l.value as number), 0);
    expect(sum).toBeCloseTo(cpu.sum, 6);
  });

  it('openmetrics text is well formed and carries the totals in base units', async () => {
    const text = await ok(['report', '--last', '--format', 'openmetrics', '--store', store]);
    const lines = text.trimEnd().split('\n');
    expect(lines.at(-1)).toBe('# EOF');
    const families: string[] = [];
    let current = '';
    let type = '';
    const sample =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")*)?\})? (-?[0-9.]+(e[+-]?[0-9]+)?|[+-]Inf|NaN)$/;
    for (const l of lines.slice(0, -1)) {
      const meta = /^# (TYPE|UNIT|HELP) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(l);
      if (meta) {
        if (meta[1] === 'TYPE') {
          // A family is described once, and its samples follow it without interruption.
          expect(families).not.toContain(meta[2]);
          families.push(meta[2]!);
          current = meta[2]!;
          type = meta[3]!;
          expect(['counter', 'gauge']).toContain(type);
        } else expect(meta[2]).toBe(current);
        if (meta[1] === 'UNIT') expect(current.endsWith(`_${meta[3]}`)).toBe(true);
        continue;
      }
      const m = sample.exec(l);
      expect(m, `bad sample line: ${l}`).not.toBeNull();
      expect(m![1]).toBe(type === 'counter' ? `${current}_total` : current);
    }
    const cpu = report.tracers[0]!.series.find((s) => s.name === 'proc.cpu.user')!;
    const line = lines.find(
      (l) =>
        l.startsWith('scalpels_proc_cpu_user_seconds_total{') &&
        l.includes(`pid="${cpu.labels.pid}"`),
    );
    expect(Number(line!.split(' ').at(-1))).toBeCloseTo(cpu.sum / 1000, 9);
    expect(text).toMatch(/^# TYPE scalpels_syscalls_calls counter$/m);
  });

  it('csv has one row per series, with the documented columns', async () => {
    const text = await ok(['report', '--last', '--format', 'csv', '--store', store]);
    const rows = text.trimEnd().split('\n');
    expect(rows[0]).toBe(
      'task,tracer,node,record,name,labels,unit,kind,points,sum,min,max,mean,last,rate,count,total_ms,mean_ms,p95_ms,per_op',
    );
    const series = report.tracers.reduce((a, t) => a + t.series.length, 0);
    expect(rows.filter((r) => r.split(',')[3] === 'series')).toHaveLength(series);
  });

  it('shows progress on a terminal only, and clears it', async () => {
    const out = join(dir, 'tty.html');
    // script(1) gives the command a pseudo-terminal.
    const r = await execa(
      'script',
      [
        '-qec',
        `"${process.execPath}" "${cli}" report --last --format html -o ${out} --store ${store}`,
        '/dev/null',
      ],
      { reject: false, env: { NO_COLOR: '1' } },
    );
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.stdout).toContain(`report ${report.task.id}: aggregating in the store`);
    expect(r.stdout.endsWith('\r\u001b[2K')).toBe(true);
  });

  it('the json report lists markers (none here) and progress stays off when piped', async () => {
    const r = await scalpels(['report', '--last', '--format', 'html', '--store', store]);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    expect((report as unknown as { markers: unknown[] }).markers).toEqual([]);
  });
});
