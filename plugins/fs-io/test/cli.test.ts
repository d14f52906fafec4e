import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capability, cliEntry, runCliOk } from '@scalpels/core/testing';

const cli = cliEntry();
const canRun =
  capability(
    'scalpels CLI built',
    cli !== undefined,
    'no built @scalpels/cli found: build the workspace (npx tsc -b)',
  ) &&
  capability('root', process.getuid?.() === 0, 'bpftrace needs root') &&
  capability(
    'tracefs',
    existsSync('/sys/kernel/tracing/events/syscalls'),
    'mount -t tracefs nodev /sys/kernel/tracing',
  );
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-fsio-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Report {
  format: string;
  tracers: {
    tracer: string;
    status: string;
    parseErrors: number;
    dropped: number;
    series: { name: string; labels: Record<string, string>; sum: number }[];
    events: { count: number; top: { key: string; count: number }[] };
  }[];
}

const env = { XDG_DATA_HOME: scratch, NO_COLOR: '1' };

/** `scalpels run -t fs-io OPTIONS... --store STORE -- COMMAND...`; throws with its stderr when it fails. */
async function traced(store: string, options: string[], command: string[]): Promise<void> {
  await runCliOk(['run', '-t', 'fs-io', ...options, '--store', store, '--', ...command], {
    cli,
    env,
    timeoutMs: 120_000,
  });
}

async function lastReport(store: string): Promise<Report> {
  const json = await runCliOk(['report', '--last', '--format', 'json', '--store', store], {
    cli,
    env,
  });
  return JSON.parse(json) as Report;
}

describe.runIf(canRun)('fs-io through the scalpels CLI', () => {
  it('run -t fs-io -- dd ... conv=fsync: 67108864 bytes written to the file by dd, at least one fsync', async () => {
    const store = `sqlite://${join(scratch, 'store.db')}`;
    const out = join(scratch, 'x');
    await traced(store, [], ['dd', 'if=/dev/zero', `of=${out}`, 'bs=1M', 'count=64', 'conv=fsync']);
    expect(statSync(out).size).toBe(67_108_864);
    const report = await lastReport(store);
    expect(report.format).toBe('scalpels.report/v1');
    const t = report.tracers.find((x) => x.tracer === 'fs-io')!;
    expect(t.status).toBe('stopped');
    expect(t.parseErrors).toBe(0);
    const sum = (name: string, where: Record<string, string>) =>
      t.series
        .filter(
          (s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v),
        )
        .reduce((a, s) => a + s.sum, 0);
    expect(sum('fs.write.bytes', { path: out, comm: 'dd' })).toBe(67_108_864);
    expect(sum('fs.write.ops', { path: out, comm: 'dd' })).toBe(64);
    expect(sum('fs.fsync.ops', { path: out, comm: 'dd' })).toBeGreaterThanOrEqual(1);
    expect(t.events.top.map((e) => e.key)).toContain(out);
    // Nothing written by the CLI itself (its store, its logs) is attributed to the target.
    expect(t.series.filter((s) => s.labels.path?.startsWith(join(scratch, 'store.db')))).toEqual(
      [],
    );
    expect(readFileSync(out).subarray(0, 4)).toEqual(Buffer.alloc(4));
  });
  it('--set fs-io.latency=true: per-file latency histograms count every write', async () => {
    const store = `sqlite://${join(scratch, 'latency.db')}`;
    const out = join(scratch, 'lat');
    await traced(
      store,
      ['--set', 'fs-io.latency=true', '--set', 'fs-io.vfs=false'],
      ['dd', 'if=/dev/zero', `of=${out}`, 'bs=4k', 'count=300', 'conv=fdatasync'],
    );
    const t = (await lastReport(store)).tracers.find((x) => x.tracer === 'fs-io')!;
    const sum = (name: string) =>
      t.series
        .filter((s) => s.name === name && s.labels.path === out && s.labels.comm === 'dd')
        .reduce((a, s) => a + s.sum, 0);
    expect(sum('fs.write.ops')).toBe(300);
    expect(sum('fs.write.bytes')).toBe(300 * 4096);
    expect(sum('fs.write.latency')).toBe(300);
    expect(sum('fs.write.time')).toBeGreaterThan(0);
    expect(
      t.series.filter((s) => s.name === 'fs.fsync.ops' && s.labels.path === out)[0]?.labels.call,
    ).toBe('fdatasync');
    expect(t.series.some((s) => s.name.startsWith('vfs.'))).toBe(false);
    // With latency on, events carry the time spent in reads and writes.
    expect(t.events.top.find((e) => e.key === out)).toBeDefined();
  });
  it('--set fs-io.technique=proc-io: per-process bytes from /proc/PID/io, counted once', async () => {
    const store = `sqlite://${join(scratch, 'procio.db')}`;
    const out = join(scratch, 'procio');
    // Writes 1 MiB and stays alive past a few samples, so the sampler sees it itself.
    const prog = `import os, sys, time\nfd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)\nfor i in range(16):\n    os.write(fd, b'q' * 65536)\ntime.sleep(0.6)\n`;
    await traced(
      store,
      ['--set', 'fs-io.technique=proc-io', '--set', 'fs-io.interval=100ms'],
      ['python3', '-c', prog, out],
    );
    const t = (await lastReport(store)).tracers.find((x) => x.tracer === 'fs-io')!;
    expect(t.status).toBe('stopped');
    const wchar = t.series.filter((s) => s.name === 'proc.io.wchar');
    const python = wchar.filter((s) => s.labels.comm === 'python3');
    expect(python.reduce((a, s) => a + s.sum, 0)).toBeGreaterThanOrEqual(1_048_576);
    // The launcher reaps the workload: its share must not be counted again on the launcher.
    const total = wchar.reduce((a, s) => a + s.sum, 0);
    expect(total).toBeLessThan(2 * 1_048_576);
    expect(t.series.some((s) => s.name.startsWith('fs.'))).toBe(false);
  });
});
