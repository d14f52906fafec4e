import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '@scalpels/core/testing';
import { createVhost, deleteVhost, vhostQueues, vhostTracing } from './fixtures/oslo-peer.mjs';
import { nftTableName } from '../src/nft.js';
import {
  cliScratch,
  cliTestsCanRun,
  nftTables,
  osloWorkload as workload,
  reportSeries as series,
} from './helpers.js';

const execFileP = promisify(execFile);
const canRun = await cliTestsCanRun();

const scratch = cliScratch('scalpels-rpc-cli-');
const vhost = `scalpels-test-rpc-cli-${randomUUID().slice(0, 8)}`;

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

describe.runIf(canRun)('rpc-calls through the scalpels CLI', () => {
  beforeAll(() => createVhost(vhost));
  afterAll(() => {
    deleteVhost(vhost);
    scratch.remove();
  });

  it('run -t rpc-calls reports exactly K calls, K replies and C casts, with the server delay as latency', async () => {
    const db = join(scratch.dir, 'run.db');
    const truthFile = join(scratch.dir, 'truth.json');
    const token = `gAAAAAB-cli-token-${randomUUID()}`;
    const [K, C, DELAY] = [25, 9, 30];
    await scratch.ok(
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
      // Stamped messages (what a 3.12+ broker with set_header_timestamp adds): the latency is the
      // broker-side one, which a tracer stalled on a busy host does not skew.
      { WORKLOAD_TOKEN: token, WORKLOAD_STAMP: '1' },
    );
    const truth = JSON.parse(readFileSync(truthFile, 'utf8')) as {
      replies: number;
      latencies: number[];
    };
    expect(truth.replies).toBe(K);
    const report = await scratch.report('--last', `sqlite://${db}`);
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
    // Stamped at publish and at reply, both inside the client's own wait (ms stamps: +1).
    expect(p50).toBeLessThanOrEqual(clientP50 + 1);
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
  }, 240_000);

  it('counts the casts of a workload that exits right after publishing them', async () => {
    const db = join(scratch.dir, 'burst.db');
    const truthFile = join(scratch.dir, 'burst.json');
    const C = 3000;
    await scratch.ok([
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
    const report = await scratch.report('--last', `sqlite://${db}`);
    // The trace copies of the last casts may still be arriving when the workload exits and the
    // tracer is told to stop (the worker drains its queue before its last flush).
    expect(series(report, 'rpc.casts').map((s) => [s.labels.method, s.sum])).toEqual([
      ['nova/compute.terminate_instance', C],
    ]);
  }, 240_000);

  it('after SIGKILL of scalpels and its worker, recover turns tracing off and removes the queue and counters', async () => {
    const db = join(scratch.dir, 'kill.db');
    const owner = scratch.start(
      [
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
      'ignore',
    );
    const ownerPid = owner.pid!;
    let worker: number | undefined;
    let table = '';
    try {
      await waitFor('the rpc-calls worker', () => {
        worker = children(ownerPid).find((p) => cmdline(p).includes('worker-main.js'));
        return (
          worker !== undefined &&
          vhostQueues(vhost).some((q) => q.startsWith('scalpels.rpc-calls.'))
        );
      });
      expect(vhostTracing(vhost)).toBe(true);
      const [task] = JSON.parse(
        await scratch.ok(['tasks', '--json', '--store', `sqlite://${db}`]),
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
    await scratch.ok(['recover', '--store', `sqlite://${db}`]);
    expect(vhostTracing(vhost)).toBe(false);
    expect(vhostQueues(vhost).filter((q) => q.startsWith('scalpels.'))).toEqual([]);
    expect(nftTables()).not.toContain(table);
    // Each rabbitmqctl call starts an Erlang VM: seconds apiece on a busy machine.
  }, 240_000);

  it('leaves tracing on when it was on before the run', async () => {
    const db = join(scratch.dir, 'preon.db');
    await execFileP('rabbitmqctl', ['-q', 'trace_on', '-p', vhost]);
    try {
      await scratch.ok([
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
        await scratch.ok(['tasks', '--json', '--store', `sqlite://${db}`]),
      ) as {
        id: string;
        tracers: { id: number }[];
      }[];
      expect(nftTables()).not.toContain(nftTableName(task!.id, task!.tracers[0]!.id));
    } finally {
      await execFileP('rabbitmqctl', ['-q', 'trace_off', '-p', vhost]);
    }
  }, 240_000);
});
