/**
 * Two overlapping `scalpels run -t rpc-calls` on one vhost, the first stopping while the second
 * still runs: trace_on is a lease, so the firehose stays on for the second, which counts every
 * call of its workload; tracing ends off, as it began.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '@scalpels/core/testing';
import { createVhost, deleteVhost, vhostTracing } from './fixtures/oslo-peer.mjs';
import { cliScratch, cliTestsCanRun, osloWorkload as workload, reportSeries } from './helpers.js';

const canRun = await cliTestsCanRun();

const scratch = cliScratch('scalpels-rpc-overlap-');
const vhost = `scalpels-test-rpc-overlap-${randomUUID().slice(0, 8)}`;

/** A `scalpels run` whose command says it started, waits for `<name>.go`, then runs `then`. */
function background(name: string, then: string[] = [], store?: string) {
  const started = join(scratch.dir, `${name}.started`);
  const go = join(scratch.dir, `${name}.go`);
  const quoted = then.map((a) => `'${a}'`).join(' ');
  const script = `touch ${started}; while [ ! -e ${go} ]; do sleep 0.05; done; ${quoted || 'true'}`;
  const child = scratch.start(
    ['run', '-t', 'rpc-calls', '--set', `rpc-calls.vhost=${vhost}`, '--name', name].concat([
      ...(store ? ['--store', store] : []),
      '--format',
      'none',
      '--',
      'sh',
      '-c',
      script,
    ]),
    ['ignore', 'ignore', 'pipe'],
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let code: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (c) => resolve((code = c))),
  );
  return {
    started: () => existsSync(started) || code !== undefined,
    go: () => writeFileSync(go, ''),
    exited,
    stderr: () => stderr,
  };
}

describe.runIf(canRun)('two overlapping rpc-calls tracers on one vhost', () => {
  beforeAll(() => createVhost(vhost));
  afterAll(() => {
    deleteVhost(vhost);
    scratch.remove();
  });

  it('the first to stop leaves trace_on to the second, which counts every call; tracing ends off', async () => {
    expect(vhostTracing(vhost)).toBe(false);
    const K = 40;
    const first = background('first');
    await waitFor('the first run to start', first.started);
    const second = background('second', [
      process.execPath,
      workload,
      vhost,
      String(K),
      '0',
      '0',
      join(scratch.dir, 'truth.json'),
    ]);
    await waitFor('the second run to start', second.started);
    first.go();
    expect(await first.exited, first.stderr()).toBe(0);
    // The first holder has stopped: the second still holds the switch.
    expect(vhostTracing(vhost)).toBe(true);
    second.go();
    expect(await second.exited, second.stderr()).toBe(0);
    expect(vhostTracing(vhost)).toBe(false);
    const report = await scratch.report('second');
    const t = report.tracers[0]!;
    expect(t.status, t.error ?? '').toBe('stopped');
    const calls = reportSeries(report, 'rpc.calls').reduce((a, s) => a + (s.sum ?? 0), 0);
    expect(calls).toBe(K);
  }, 300_000);

  it('a tracer of another store is refused while one traces the vhost; the first keeps tracing and ends it', async () => {
    expect(vhostTracing(vhost)).toBe(false);
    const first = background('first-of-a');
    await waitFor('the first run to start', first.started);
    expect(vhostTracing(vhost)).toBe(true);
    expect(ownerMarks()).toHaveLength(1);
    // Its own store: it shares no lease with the first, and would turn tracing off under it.
    const other = background('of-b', [], `sqlite://${join(scratch.dir, 'b.db')}`);
    expect(await other.exited).toBe(1);
    expect(other.stderr().trim()).toMatch(
      new RegExp(
        `^scalpels: rpc-calls: another scalpels tracer \\(\\S+\\) traces vhost ${vhost} on \\S+@\\S+, for another store: its stop would turn tracing off under this one; stop it first, or run scalpels recover on the store that started it if it died$`,
      ),
    );
    expect(vhostTracing(vhost)).toBe(true);
    first.go();
    expect(await first.exited, first.stderr()).toBe(0);
    expect(vhostTracing(vhost)).toBe(false);
    expect(ownerMarks()).toEqual([]);
  }, 300_000);
});

/** The broker's global parameters that mark a scalpels tracer's tracing. */
function ownerMarks(): string[] {
  const rows = JSON.parse(
    execFileSync('rabbitmqctl', ['-q', '--formatter', 'json', 'list_global_parameters'], {
      encoding: 'utf8',
    }),
  ) as { name: string; value: unknown }[];
  return rows
    .filter((r) => r.name.startsWith('scalpels-trace-owner-'))
    .filter((r) => JSON.stringify(r.value).includes(JSON.stringify(vhost).slice(1, -1)))
    .map((r) => r.name);
}
