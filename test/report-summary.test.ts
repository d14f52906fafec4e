import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ok, scalpels, scratchDir } from './report-helpers.js';

// A new user's first run: three real tracers (proc, syscalls, fs-io) on a small real workload
// (tar a folder, a short Python loop). The report must fit one screen and say what it cost.

const dir = scratchDir('scalpels-report-summary-');
const store = `sqlite://${join(dir, 'store.db')}`;

interface Series {
  name: string;
  kind: string;
  labels: Record<string, string>;
  sum: number;
  perOp?: number;
}
interface Report {
  format: string;
  task: { id: string; ops?: number };
  tracers: {
    tracer: string;
    series: Series[];
    events: { count: number; top: { key: string; count: number; perOp?: number }[] };
  }[];
  summary: {
    ops: number | null;
    headline: {
      tracer: string;
      label: string;
      value: number;
      unit: string;
      perOp: number | null;
    }[];
    sections: { tracer: string; tables: { title: string; rows: { key: string[] }[] }[] }[];
  };
}

describe('report summary of a real three-tracer run', () => {
  it('run prints at most 60 lines with the CPU time, the top syscalls and the files; --all lists every series; --ops adds per-op figures', async () => {
    const folder = join(dir, 'folder');
    mkdirSync(folder);
    for (let i = 0; i < 20; i++)
      writeFileSync(join(folder, `file-${i}.txt`), 'x'.repeat(4096 * (i + 1)));
    const tarball = join(dir, 'folder.tar');
    const r = await scalpels([
      'run',
      '-t',
      'proc,syscalls,fs-io',
      '--name',
      'summary',
      '--store',
      store,
      '--',
      'sh',
      '-c',
      `tar cf ${tarball} -C ${dir} folder; python3 -c "s=0\nfor i in range(300000): s+=i"`,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = r.stderr.trimEnd().split('\n');
    process.stdout.write(`run printed ${lines.length} lines:\n${r.stderr}`);
    expect(lines.length).toBeLessThanOrEqual(60);
    // The headline: the workload's CPU time in humanized units, its syscalls, its file bytes.
    expect(r.stderr).toMatch(/^ {2}CPU time +\d[\d.]* (ms|s) +proc$/m);
    expect(r.stderr).toMatch(/^ {2}syscalls +[\d.]+k? +syscalls$/m);
    expect(r.stderr).toMatch(/^ {2}file bytes written +[\d.]+ (KiB|MiB) +fs-io$/m);
    // Top syscalls and files: tar wrote the tarball; it opened the folder's files.
    expect(r.stderr).toMatch(/^syscalls · System calls .*(top 10 of \d+)?/m);
    expect(r.stderr).toMatch(/^ {2}(openat|read|write|newfstatat|close|mmap) +/m);
    expect(r.stderr).toContain('folder.tar');
    // No zero figure in the headline (the lines up to the first section): a gauge the sampler
    // never saw while the short workload lived is hidden, not shown as 0.
    const headline = r.stderr.slice(0, r.stderr.indexOf(' · '));
    expect(headline).not.toMatch(/ 0 (B|s|ms)\s/);

    const json = JSON.parse(
      await ok(['report', '--last', '--ops', '10', '--format', 'json', '--store', store]),
    ) as Report;
    expect(json.format).toBe('scalpels.report/v1');
    expect(json.task.ops).toBe(10);
    let counters = 0;
    for (const tr of json.tracers)
      for (const s of tr.series) {
        if (s.kind !== 'counter') {
          expect(s.perOp).toBeUndefined();
          continue;
        }
        counters++;
        expect(s.perOp, `${tr.tracer} ${s.name}`).toBeCloseTo(s.sum / 10, 9);
      }
    expect(counters).toBeGreaterThan(100);
    for (const tr of json.tracers)
      for (const e of tr.events.top) expect(e.perOp).toBeCloseTo(e.count / 10, 9);
    // The headline in the JSON: CPU time and its share per operation.
    const cpu = json.summary.headline.find((f) => f.label === 'CPU time')!;
    expect(cpu.tracer).toBe('proc');
    expect(cpu.value).toBeGreaterThan(0);
    expect(cpu.perOp).toBeCloseTo(cpu.value / 10, 9);
    const cpuSeries = json.tracers
      .find((t) => t.tracer === 'proc')!
      .series.filter((s) => s.name === 'proc.cpu.user' || s.name === 'proc.cpu.system')
      .reduce((a, s) => a + s.sum, 0);
    expect(cpu.value).toBeCloseTo(cpuSeries, 6);
    const files = json.summary.sections
      .find((s) => s.tracer === 'fs-io')!
      .tables.find((t) => t.title.startsWith('Files'))!;
    expect(files.rows[0]!.key[0]).toContain('folder.tar');

    // The table with --ops: per-operation figures in the headline and a per-op column.
    const table = await ok(['report', '--last', '--ops', '10', '--store', store]);
    expect(table).toMatch(/^ {2}CPU time +\S+ \S+ +\S+ (ms|µs|s)\/op +proc$/m);
    expect(table).toMatch(/ calls\/op /);

    // --all: every series of every tracer, one line each, as before.
    const all = await ok(['report', '--last', '--all', '--store', store]);
    const seriesCount = json.tracers.reduce((a, t) => a + t.series.length, 0);
    const rows = all
      .split('\n')
      .filter((l) => /^ {2}(proc|kernel|mem|disk|network|syscalls|fs|vfs)\./.test(l));
    expect(rows.length).toBe(seriesCount);

    // --top N and a bad --ops.
    const top3 = await ok(['report', '--last', '--top', '3', '--store', store]);
    expect(top3).toMatch(/\(top 3 of \d+\)/);
    const bad = await scalpels(['report', '--last', '--ops', '0', '--store', store]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/--ops 0: expected a positive whole number/);
  }, 240_000);
});
