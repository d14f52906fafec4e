import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capability } from '@scalpels/core/testing';
import { createVhost, deleteVhost, vhostQueues, vhostTracing } from './fixtures/oslo-peer.mjs';
import { nftTableName } from '../src/nft.js';
import { brokerUp, nftTables, rabbitmqctlWorks, workerBuilt } from './helpers.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../../cli/dist/main.js', import.meta.url));
const workload = fileURLToPath(new URL('./fixtures/oslo-workload.mjs', import.meta.url));
const canRun =
  capability(
    'scalpels CLI built',
    existsSync(cli),
    `${cli} missing: build the workspace (npx tsc -b)`,
  ) &&
  capability('rabbitmq', await brokerUp(), 'no RabbitMQ listening on 127.0.0.1:5672') &&
  capability(
    'rabbitmqctl',
    rabbitmqctlWorks(),
    'rabbitmqctl missing or not allowed (run as root)',
  ) &&
  capability('worker build', workerBuilt(), 'run npx tsc -b in plugins/rpc-calls');

const scratch = mkdtempSync(join(tmpdir(), 'scalpels-rpc-cli-'));
const vhost = `scalpels-test-rpc-cli-${randomUUID().slice(0, 8)}`;
const env = { ...process.env, XDG_DATA_HOME: scratch, NO_COLOR: '1' };

interface ReportSeries {
  name: string;
  kind: string;
  unit: string;
  labels: Record<string, string>;
  sum?: number;
  last?: number;
}
interface Report {
  format: string;
  task: { id: string };
  tracers: {
    id: number;
    tracer: string;
    status: string;
    parseErrors: number;
    series: ReportSeries[];
    events: { count: number; top: { key: string; count: number; meanMs?: number }[] };
  }[];
}

const scalpels = async (args: string[], extraEnv: Record<string, string> = {}): Promise<string> =>
  (await run(process.execPath, [cli, ...args], { env: { ...env, ...extraEnv }, timeout: 120_000 }))
    .stdout;

function series(r: Report, name: string, method?: string): ReportSeries[] {
  return r.tracers[0]!.series.filter(
    (s) => s.name === name && (method === undefined || s.labels.method === method),
  );
}

/** Every byte of a SQLite store (main file and WAL), to look for secrets. */
function storeBytes(dbPath: string): string {
  return ['', '-wal', '-shm']
    .map((suffix) => dbPath + suffix)
    .filter((f) => existsSync(f))
    .map((f) => readFileSync(f).toString('latin1'))
    .join('');
}

function children(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

async function until(what: string, ok: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.runIf(canRun)('rpc-calls through the scalpels CLI', () => {
  beforeAll(() => createVhost(vhost));
  afterAll(() => {
    deleteVhost(vhost);
    rmSync(scratch, { recursive: true, force: true });
  });

  it('run -t rpc-calls reports exactly K calls, K replies and C casts, with the server delay as latency', async () => {
    const db = join(scratch, 'run.db');
    const truthFile = join(scratch, 'truth.json');
    const token = `gAAAAAB-cli-token-${randomUUID()}`;
    const [K, C, DELAY] = [25, 9, 30];
    await scalpels(
      [
        'run',
        '-t',
        'rpc-calls',
        '--set',
        `rpc-calls.vhost=${vhost}`,
        '--set',
        'rpc-calls.events=true',
        '--store',
        `sqlite://${db}`,
        '--',
        process.execPath,
        workload,
        vhost,
        String(K),
        String(C),
        String(DELAY),
        truthFile,
      ],
      { WORKLOAD_TOKEN: token },
    );
    const truth = JSON.parse(readFileSync(truthFile, 'utf8')) as {
      replies: number;
      latencies: number[];
    };
    expect(truth.replies).toBe(K);
    const report = JSON.parse(
      await scalpels(['report', '--last', '--format', 'json', '--store', `sqlite://${db}`]),
    ) as Report;
    expect(report.format).toBe('scalpels.report/v1');
    const tracer = report.tracers.find((t) => t.tracer === 'rpc-calls')!;
    expect(tracer).toMatchObject({ status: 'stopped', parseErrors: 0 });

    const build = 'nova/compute.build_instances';
    expect(series(report, 'rpc.calls').map((s) => [s.labels.method, s.sum])).toEqual([[build, K]]);
    expect(series(report, 'rpc.replies').map((s) => [s.labels.method, s.sum])).toEqual([
      [build, K],
    ]);
    expect(series(report, 'rpc.casts').map((s) => [s.labels.method, s.sum])).toEqual([
      ['nova/compute.terminate_instance', C],
    ]);
    expect(series(report, 'rpc.timeouts')).toEqual([]);
    const p50 = series(report, 'rpc.latency.p50', build)[0]!.last!;
    const clientP50 = [...truth.latencies].sort((a, b) => a - b)[Math.ceil(K / 2) - 1]!;
    console.log(
      `scalpels run: tracer p50 ${p50} ms, client p50 ${clientP50.toFixed(3)} ms, delay ${DELAY} ms`,
    );
    expect(p50).toBeGreaterThanOrEqual(DELAY - 1);
    expect(p50).toBeLessThanOrEqual(clientP50 + 3);
    const top = tracer.events.top.find((e) => e.key === build)!;
    expect(top.count).toBe(K);

    // Traffic: nftables counted at least the bodies the workload published.
    const published = series(report, 'rpc.bytes')
      .filter((s) => s.labels.kind === 'call' || s.labels.kind === 'cast')
      .reduce((a, s) => a + (s.sum ?? 0), 0);
    const toBroker = series(report, 'rpc.traffic.bytes').find(
      (s) => s.labels.direction === 'to-broker',
    )!;
    expect(toBroker.sum).toBeGreaterThan(published);

    expect(storeBytes(db)).toContain('build_instances');
    expect(storeBytes(db)).not.toContain(token);
    expect(storeBytes(db)).not.toContain('hunter2');
    expect(vhostTracing(vhost)).toBe(false);
    expect(vhostQueues(vhost).filter((q) => q.startsWith('scalpels.'))).toEqual([]);
    expect(nftTables()).not.toContain(nftTableName(report.task.id, tracer.id));
  });

  it('counts the casts of a workload that exits right after publishing them', async () => {
    const db = join(scratch, 'burst.db');
    const truthFile = join(scratch, 'burst.json');
    const C = 3000;
    await scalpels([
      'run',
      '-t',
      'rpc-calls',
      '--set',
      `rpc-calls.vhost=${vhost}`,
      '--set',
      'rpc-calls.traffic=false',
      '--store',
      `sqlite://${db}`,
      '--',
      process.execPath,
      workload,
      vhost,
      '0',
      String(C),
      '0',
      truthFile,
    ]);
    const report = JSON.parse(
      await scalpels(['report', '--last', '--format', 'json', '--store', `sqlite://${db}`]),
    ) as Report;
    // The trace copies of the last casts may still be arriving when the workload exits and the
    // tracer is told to stop (the worker drains its queue before its last flush).
    expect(series(report, 'rpc.casts').map((s) => [s.labels.method, s.sum])).toEqual([
      ['nova/compute.terminate_instance', C],
    ]);
  });

  it('after SIGKILL of scalpels and its worker, recover turns tracing off and removes the queue and counters', async () => {
    const db = join(scratch, 'kill.db');
    const owner = spawn(
      process.execPath,
      [
        cli,
        'run',
        '-t',
        'rpc-calls',
        '--set',
        `rpc-calls.vhost=${vhost}`,
        '--store',
        `sqlite://${db}`,
        '--',
        'sleep',
        '600',
      ],
      { env, stdio: 'ignore' },
    );
    const ownerPid = owner.pid!;
    let worker: number | undefined;
    let table = '';
    try {
      await until('the rpc-calls worker', () => {
        worker = children(ownerPid).find((p) => cmdline(p).includes('worker-main.js'));
        return (
          worker !== undefined &&
          vhostQueues(vhost).some((q) => q.startsWith('scalpels.rpc-calls.'))
        );
      });
      expect(vhostTracing(vhost)).toBe(true);
      const [task] = JSON.parse(
        await scalpels(['tasks', '--json', '--store', `sqlite://${db}`]),
      ) as {
        id: string;
        tracers: { id: number }[];
      }[];
      table = nftTableName(task!.id, task!.tracers[0]!.id);
      expect(nftTables()).toContain(table);
    } finally {
      // Kill what we started, by pid: the owner, its worker, and the workload (`sleep`).
      const rest = children(ownerPid).filter((p) => p !== worker);
      for (const p of [ownerPid, worker, ...rest.flatMap((p) => [p, ...children(p)])])
        if (p) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            // already gone
          }
        }
    }
    await new Promise((r) => owner.once('exit', r));
    // Killed mid-trace: the broker still has tracing on until someone undoes it.
    expect(vhostTracing(vhost)).toBe(true);
    await scalpels(['recover', '--store', `sqlite://${db}`]);
    expect(vhostTracing(vhost)).toBe(false);
    expect(vhostQueues(vhost).filter((q) => q.startsWith('scalpels.'))).toEqual([]);
    expect(nftTables()).not.toContain(table);
  });

  it('leaves tracing on when it was on before the run', async () => {
    const db = join(scratch, 'preon.db');
    await run('rabbitmqctl', ['-q', 'trace_on', '-p', vhost]);
    try {
      await scalpels([
        'run',
        '-t',
        'rpc-calls',
        '--set',
        `rpc-calls.vhost=${vhost}`,
        '--store',
        `sqlite://${db}`,
        '--',
        'true',
      ]);
      expect(vhostTracing(vhost)).toBe(true);
      expect(vhostQueues(vhost).filter((q) => q.startsWith('scalpels.'))).toEqual([]);
      // What the tracer itself set up is undone all the same.
      const [task] = JSON.parse(
        await scalpels(['tasks', '--json', '--store', `sqlite://${db}`]),
      ) as {
        id: string;
        tracers: { id: number }[];
      }[];
      expect(nftTables()).not.toContain(nftTableName(task!.id, task!.tracers[0]!.id));
    } finally {
      await run('rabbitmqctl', ['-q', 'trace_off', '-p', vhost]);
    }
  });
});
