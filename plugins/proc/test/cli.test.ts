import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capability, cliEntry, runCliOk } from '@scalpels/core/testing';
import { samplerBuilt } from './helpers.js';

const cli = cliEntry();
const canRun =
  capability(
    'scalpels CLI built',
    cli !== undefined,
    'no built @scalpels/cli found: build the workspace (npx tsc -b)',
  ) && capability('proc sampler built', samplerBuilt, 'run `npx tsc -b plugins/proc` first');
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-proc-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface ReportSeries {
  name: string;
  unit: string;
  kind: string;
  labels: Record<string, string>;
  sum?: number;
}

// The workload: a python wrapper that runs a node busy loop burning 2 s of CPU, then writes what
// the kernel accounted for itself and its waited-for children (getrusage SELF + CHILDREN).
const WRAPPER = `
import json, resource, subprocess, sys
subprocess.run([sys.argv[1], '-e', 'const t = process.cpuUsage(); let x = 0; while (true) { const u = process.cpuUsage(t); if (u.user + u.system > 2e6) break; for (let i = 0; i < 1e5; i++) x += Math.sqrt(i); }'], check=True)
s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({'ms': 1000 * (s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime)}, open(sys.argv[2], 'w'))
`;

describe.runIf(canRun)('proc through the scalpels CLI', () => {
  it('run -t proc reports the CPU time the kernel accounted for the workload', async () => {
    const store = `sqlite://${join(scratch, 'store.db')}`;
    const truthFile = join(scratch, 'truth.json');
    const env = { XDG_DATA_HOME: scratch, NO_COLOR: '1' };
    await runCliOk(
      [
        'run',
        '-t',
        'proc',
        '--set',
        'proc.interval=500ms',
        '--store',
        store,
        '--',
        'python3',
        '-c',
        WRAPPER,
        process.execPath,
        truthFile,
      ],
      { cli, env, timeoutMs: 60_000 },
    );
    const stdout = await runCliOk(['report', '--last', '--format', 'json', '--store', store], {
      cli,
      env,
    });
    const report = JSON.parse(stdout) as {
      format: string;
      tracers: {
        tracer: string;
        status: string;
        error: string | null;
        parseErrors: number;
        series: ReportSeries[];
      }[];
    };
    expect(report.format).toBe('scalpels.report/v1');
    const tracer = report.tracers.find((t) => t.tracer === 'proc')!;
    expect(tracer.status, tracer.error ?? '').toBe('stopped');
    expect(tracer.parseErrors).toBe(0);
    const cpu = tracer.series.filter(
      (s) => s.name === 'proc.cpu.user' || s.name === 'proc.cpu.system',
    );
    expect(cpu.map((s) => s.kind)).toEqual(['counter', 'counter']);
    expect(cpu.every((s) => s.unit === 'ms')).toBe(true);
    // The tree's root is the launcher, labelled with the workload's command.
    expect(cpu.map((s) => s.labels.comm)).toEqual(['python3', 'python3']);
    const reportedMs = cpu.reduce((a, s) => a + (s.sum ?? 0), 0);
    const truthMs = (JSON.parse(readFileSync(truthFile, 'utf8')) as { ms: number }).ms;
    console.log(
      `scalpels run: report ${reportedMs} ms, kernel (getrusage) ${truthMs.toFixed(1)} ms`,
    );
    expect(truthMs).toBeGreaterThan(1900);
    expect(Math.abs(reportedMs - truthMs) / truthMs).toBeLessThan(0.1);
    // Once the workload is gone only the launcher is left, and it is not part of the workload.
    const last = (name: string): number | undefined =>
      (tracer.series.find((s) => s.name === name) as (ReportSeries & { last?: number }) | undefined)
        ?.last;
    expect([last('proc.count'), last('proc.threads'), last('proc.rss')]).toEqual([0, 0, 0]);
    const memTotal = tracer.series.find((s) => s.name === 'mem.total');
    expect(memTotal).toMatchObject({ kind: 'gauge', unit: 'bytes' });
  });
});
