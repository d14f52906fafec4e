import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { capability } from '@scalpels/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildWorkload,
  isRoot,
  pluginDir,
  startWorkload,
  tracefsMounted,
  which,
} from './helpers.js';

const run = promisify(execFile);
const cli = join(pluginDir, '..', '..', 'cli', 'dist', 'main.js');
const N = 200_000;

const ok =
  capability('scalpels CLI', existsSync(cli), `${cli} is not built`) &&
  capability('root', isRoot, 'bpftrace needs root') &&
  capability('bpftrace', which('bpftrace'), 'bpftrace is not installed') &&
  capability('tracefs', tracefsMounted, 'tracefs is not mounted on /sys/kernel/tracing') &&
  capability('cc', which('cc'), 'a C compiler builds the workload');

interface Series {
  name: string;
  labels: Record<string, string>;
  sum: number;
}
interface Report {
  format: string;
  tracers: {
    tracer: string;
    status: string;
    technique?: string;
    error: string | null;
    parseErrors: number;
    dropped: number;
    series: Series[];
  }[];
}

describe.runIf(ok)('scalpels run -t syscalls (end to end)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'scalpels-syscalls-e2e-'));
  const store = `sqlite://${join(dir, 'x.db')}`;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reports exactly N getppid calls for the workload, none of another process', async () => {
    const bin = buildWorkload();
    // A process outside the target making getppid calls at the same time.
    const other = startWorkload(bin, 50_000);
    const otherDone = other.go();
    const traced = run(
      process.execPath,
      [cli, 'run', '-t', 'syscalls', '--store', store, '--', bin, String(N), '777'],
      { timeout: 120_000 },
    );
    // The workload inherits this stdin: end it so its first read returns.
    traced.child.stdin?.end();
    await traced;
    await otherDone;
    const { stdout } = await run(process.execPath, [
      cli,
      'report',
      '--last',
      '--format',
      'json',
      '--store',
      store,
    ]);
    const report = JSON.parse(stdout) as Report;
    expect(report.format).toBe('scalpels.report/v1');
    const tracer = report.tracers.find((t) => t.tracer === 'syscalls')!;
    expect(tracer.status).toBe('stopped');
    expect(tracer.parseErrors).toBe(0);
    expect(tracer.dropped).toBe(0);
    const getppid = tracer.series.filter(
      (s) => s.name === 'syscalls.calls' && s.labels.syscall === 'getppid',
    );
    const byPid = new Map<string, number>();
    for (const s of getppid) byPid.set(s.labels.pid!, (byPid.get(s.labels.pid!) ?? 0) + s.sum);
    expect([...byPid.values()].sort((a, b) => a - b)).toEqual([777, N]);
    expect(byPid.has(String(other.pid))).toBe(false);
    expect(getppid.every((s) => s.labels.comm === 'getppid-loop')).toBe(true);
    // The launcher of `run` is not part of the workload: only the workload's two processes show.
    const pids = new Set(
      tracer.series.filter((s) => s.name === 'syscalls.calls').map((s) => s.labels.pid),
    );
    expect([...pids].sort()).toEqual([...byPid.keys()].sort());
  });

  it.runIf(capability('strace', which('strace'), 'strace is not installed'))(
    'falls back to strace when asked: same exact count, totals only',
    async () => {
      const bin = buildWorkload();
      const traced = run(
        process.execPath,
        [
          cli,
          'run',
          '-t',
          'syscalls',
          '--set',
          'syscalls.technique=strace',
          '--store',
          store,
          '--',
          bin,
          '20000',
        ],
        { timeout: 120_000 },
      );
      traced.child.stdin?.end();
      await traced;
      const { stdout } = await run(process.execPath, [
        cli,
        'report',
        '--last',
        '--format',
        'json',
        '--store',
        store,
      ]);
      const tracer = (JSON.parse(stdout) as Report).tracers.find((t) => t.tracer === 'syscalls')!;
      expect(tracer.status, tracer.error ?? '').toBe('stopped');
      expect(tracer.technique).toBe('strace');
      expect(tracer.parseErrors).toBe(0);
      const getppid = tracer.series.filter(
        (s) => s.name === 'syscalls.calls' && s.labels.syscall === 'getppid',
      );
      expect(getppid.map((s) => [s.labels, s.sum])).toEqual([[{ syscall: 'getppid' }, 20_000]]);
    },
  );
});
