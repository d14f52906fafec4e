import { spawn } from 'node:child_process';
import { capability, runWorker, waitFor } from '@scalpels/core/testing';
import { describe, expect, it } from 'vitest';
import plugin from '../src/index.js';
import {
  buildWorkload,
  isRoot,
  pluginDir,
  samples,
  startWorkload,
  total,
  tracefsMounted,
  which,
} from './helpers.js';

const N = 200_000;

const canBpftrace =
  capability('root', isRoot, 'attaching bpftrace needs root') &&
  capability('bpftrace', which('bpftrace'), 'bpftrace is not installed') &&
  capability('tracefs', tracefsMounted, 'tracefs is not mounted on /sys/kernel/tracing') &&
  capability('cc', which('cc'), 'a C compiler builds the workload');

describe.runIf(canBpftrace)('bpftrace technique against a real workload', () => {
  it('counts exactly N getppid calls of the target and its child, not of other processes', async () => {
    const bin = buildWorkload();
    const target = startWorkload(bin, N, 1234);
    // Same program, not a target: its calls must not be counted.
    const other = startWorkload(bin, 5_000);
    const { records, outcome } = await runWorker(plugin, {
      pluginDir,
      technique: 'bpftrace',
      options: { interval: '200ms', exits: true },
      target: { kind: 'pid', pids: [target.pid], description: `pid ${target.pid}` },
      during: async (live) => {
        await Promise.all([target.go(), other.go()]);
        // A periodic snapshot parsed too (the final one comes at stop): waited for, not slept.
        await waitFor('a periodic snapshot', () =>
          live.records.some((r) => r.kind === 'sample' && r.series === 'syscalls.calls'),
        );
      },
    });
    expect(outcome.status).toBe('stopped');
    expect(outcome.parseErrors).toBe(0);
    const getppid = samples(records, 'syscalls.calls').filter(
      (s) => s.labels?.syscall === 'getppid',
    );
    const byPid = new Map<string, number>();
    for (const s of getppid) byPid.set(s.labels!.pid!, (byPid.get(s.labels!.pid!) ?? 0) + s.value);
    expect(byPid.get(String(target.pid))).toBe(N);
    expect(byPid.size).toBe(2);
    const childPid = [...byPid.keys()].find((p) => p !== String(target.pid))!;
    expect(byPid.get(childPid)).toBe(1234);
    expect(byPid.has(String(other.pid))).toBe(false);
    expect(getppid.every((s) => s.labels?.comm === 'getppid-loop')).toBe(true);
    expect(
      total(records, 'syscalls.errors', {
        pid: String(target.pid),
        syscall: 'openat',
        errno: 'ENOENT',
      }),
    ).toBe(3);
    // exit_group never returns; it is counted on entry.
    expect(
      total(records, 'syscalls.calls', { pid: String(target.pid), syscall: 'exit_group' }),
    ).toBe(1);
    expect(total(records, 'syscalls.calls', { pid: childPid, syscall: 'exit_group' })).toBe(1);
  });

  it('measures latency: histogram buckets add up to the calls, and a total time', async () => {
    const bin = buildWorkload();
    const target = startWorkload(bin, 50_000);
    const { records, outcome } = await runWorker(plugin, {
      pluginDir,
      technique: 'bpftrace',
      options: { latency: true },
      target: { kind: 'pid', pids: [target.pid], description: `pid ${target.pid}` },
      during: () => target.go(),
    });
    expect(outcome.status).toBe('stopped');
    expect(outcome.parseErrors).toBe(0);
    const match = { pid: String(target.pid), syscall: 'getppid' };
    expect(total(records, 'syscalls.calls', match)).toBe(50_000);
    expect(total(records, 'syscalls.latency', match)).toBe(50_000);
    const les = samples(records, 'syscalls.latency').map((s) => Number(s.labels!.le));
    expect(les.every((le) => Number.isInteger(le) && le >= 0)).toBe(true);
    const ms = total(records, 'syscalls.time', match);
    expect(ms).toBeGreaterThan(0);
    // Each call took at least 1 ns and far less than a second.
    expect(ms).toBeGreaterThan(50_000 / 1e6);
    expect(ms).toBeLessThan(50_000 * 1000);
  });

  it('system-wide, per process name: the workload shows under its own name', async () => {
    const name = `scgp${process.pid % 100000}`;
    const bin = buildWorkload(name);
    const target = startWorkload(bin, 30_000);
    const { records, outcome } = await runWorker(plugin, {
      pluginDir,
      technique: 'bpftrace',
      options: { top: 10_000 },
      during: () => target.go(),
    });
    expect(outcome.status).toBe('stopped');
    expect(outcome.parseErrors).toBe(0);
    expect(total(records, 'syscalls.calls', { comm: name, syscall: 'getppid' })).toBe(30_000);
    expect(samples(records, 'syscalls.calls').every((s) => s.labels?.pid === undefined)).toBe(true);
  });

  for (const by of ['total', 'comm'] as const)
    it(`by=${by} with latency: same exact count under fewer labels`, async () => {
      const bin = buildWorkload();
      const target = startWorkload(bin, 40_000, 100);
      const { records, outcome } = await runWorker(plugin, {
        pluginDir,
        technique: 'bpftrace',
        options: { by, latency: true },
        target: { kind: 'pid', pids: [target.pid], description: `pid ${target.pid}` },
        during: () => target.go(),
      });
      expect(outcome.status).toBe('stopped');
      expect(outcome.parseErrors).toBe(0);
      const labels: Record<string, string> =
        by === 'total' ? { syscall: 'getppid' } : { comm: 'getppid-loop', syscall: 'getppid' };
      expect(total(records, 'syscalls.calls', labels)).toBe(40_100);
      expect(total(records, 'syscalls.latency', labels)).toBe(40_100);
      // exit_group is counted only with exits=true.
      expect(total(records, 'syscalls.calls', { syscall: 'exit_group' })).toBe(0);
      const keys = new Set(
        samples(records, 'syscalls.calls').flatMap((s) => Object.keys(s.labels ?? {})),
      );
      expect([...keys].sort()).toEqual(by === 'total' ? ['syscall'] : ['comm', 'syscall']);
    });

  it('says so when a kernel map fills up (counted as a parse error)', async () => {
    // 150 short processes of ~30 distinct calls each: far more pid x syscall keys than 1024.
    const sh = spawn('sh', ['-c', 'read x; for i in $(seq 150); do /bin/true; done'], {
      stdio: ['pipe', 'ignore', 'inherit'],
    });
    const exited = new Promise((r) => sh.once('exit', r));
    const { outcome } = await runWorker(plugin, {
      pluginDir,
      technique: 'bpftrace',
      options: { 'max-keys': 1024 },
      target: { kind: 'pid', pids: [sh.pid!], description: `pid ${sh.pid}` },
      during: async () => {
        sh.stdin!.end('go\n');
        await exited;
      },
    });
    expect(outcome.status).toBe('stopped');
    expect(outcome.parseErrors).toBe(1);
    expect(outcome.diagnostics[0]).toMatch(/@calls reached max-keys=1024/);
  });

  it('with a long interval, the final snapshot at stop still has every call', async () => {
    const bin = buildWorkload();
    const target = startWorkload(bin, 30_000);
    const { records, outcome } = await runWorker(plugin, {
      pluginDir,
      technique: 'bpftrace',
      options: { interval: '1m' },
      target: { kind: 'pid', pids: [target.pid], description: `pid ${target.pid}` },
      during: () => target.go(),
    });
    expect(outcome.status).toBe('stopped');
    expect(outcome.forcedKill).toBe(false);
    expect(outcome.parseErrors).toBe(0);
    expect(total(records, 'syscalls.calls', { pid: String(target.pid), syscall: 'getppid' })).toBe(
      30_000,
    );
  });

  it('run target: follows the launcher children, leaves the launcher itself out', async () => {
    const bin = buildWorkload();
    // Stands in for the core's launcher: waits for the go, then starts the workload.
    const launcher = spawn('sh', ['-c', `read go; "${bin}" 25000 </dev/null; true`], {
      stdio: ['pipe', 'ignore', 'inherit'],
    });
    const exited = new Promise((r) => launcher.once('exit', r));
    const { records, outcome } = await runWorker(plugin, {
      pluginDir,
      technique: 'bpftrace',
      target: {
        kind: 'run',
        pids: [launcher.pid!],
        launcher: launcher.pid!,
        description: 'run: getppid-loop',
      },
      during: async () => {
        launcher.stdin!.end('go\n');
        await exited;
      },
    });
    expect(outcome.status).toBe('stopped');
    expect(outcome.parseErrors).toBe(0);
    const pids = new Set(samples(records, 'syscalls.calls').map((s) => s.labels!.pid));
    expect(pids.has(String(launcher.pid))).toBe(false);
    expect(pids.size).toBe(1);
    expect(total(records, 'syscalls.calls', { comm: 'getppid-loop', syscall: 'getppid' })).toBe(
      25_000,
    );
    // The workload's own start is seen: it was started after the tracer attached.
    expect(total(records, 'syscalls.calls', { comm: 'getppid-loop', syscall: 'execve' })).toBe(1);
  });

  it('system-wide per process: processes running before the start are named too', async () => {
    const bin = buildWorkload();
    const w = startWorkload(bin, 20_000);
    const { records, outcome } = await runWorker(plugin, {
      pluginDir,
      technique: 'bpftrace',
      options: { by: 'process' },
      during: () => w.go(),
    });
    expect(outcome.status).toBe('stopped');
    expect(outcome.parseErrors).toBe(0);
    const mine = samples(records, 'syscalls.calls').filter((s) => s.labels?.pid === String(w.pid));
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((s) => s.labels?.comm === 'getppid-loop')).toBe(true);
    expect(total(records, 'syscalls.calls', { pid: String(w.pid), syscall: 'getppid' })).toBe(
      20_000,
    );
  });
});
