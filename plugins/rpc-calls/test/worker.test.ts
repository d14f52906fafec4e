import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runWorker, waitFor } from '@scalpels/core/testing';
import { validateOptions, type TraceEvent } from '@scalpels/core';
import plugin from '../src/index.js';
import { traceQueueName } from '../src/worker.js';
import { nftTableName } from '../src/nft.js';
import {
  amqpUrl,
  context,
  createVhost,
  deleteVhost,
  OsloClient,
  OsloServer,
  queueArguments,
  vhostQueues,
  vhostTracing,
} from './fixtures/oslo-peer.mjs';
import {
  brokerTestsCanRun,
  checkContext,
  nftTables,
  last,
  pluginDir,
  runSetup,
  runUndo,
  sums,
} from './helpers.js';

const live = await brokerTestsCanRun();

const vhost = `scalpels-test-rpc-${randomUUID().slice(0, 8)}`;
const DELAY_MS = 40;
const K = 12;
const C = 7;
const TOKEN = `gAAAAAB-secret-token-${randomUUID()}`;

describe.runIf(live)('rpc-calls worker against the real RabbitMQ', () => {
  beforeAll(() => createVhost(vhost));
  afterAll(() => deleteVhost(vhost));

  it('counts K calls with K replies and C casts under their method names, with the server delay as latency', async () => {
    const raw = { vhost, events: true, deliver: true, interval: '200ms' };
    const options = validateOptions(plugin, raw);
    expect(vhostTracing(vhost)).toBe(false);
    const checked = await plugin.check(checkContext(options, 'full'));
    expect(checked).toMatchObject({ status: 'ok', technique: 'firehose+nft' });
    // runWorker runs the worker as tracer 1 of task `test`: setup uses the same names.
    const { journal } = await runSetup(options, 'test', checked.technique);
    expect(journal.map((a) => a.kind)).toEqual([
      'nft-table',
      'rabbitmq-trace-queue',
      'rabbitmq-trace-on',
    ]);
    expect(vhostTracing(vhost)).toBe(true);
    expect(nftTables()).toContain(nftTableName('test', 1));

    const server = await OsloServer.start(amqpUrl(vhost), {
      exchange: 'nova',
      topic: 'compute',
      server: 'host1',
      delayMs: DELAY_MS,
      failing: ['get_console_output'],
      silent: ['never_answers'],
      // Stamped like a 3.12+ broker with set_header_timestamp stamps (this 3.10 one does not):
      // latencies then come from those stamps, not from when this tracer read the trace copies.
      stamp: true,
    });
    const client = await OsloClient.connect(amqpUrl(vhost), 'nova', true);
    const requestIds: string[] = [];
    const clientMs: number[] = [];
    let result;
    try {
      result = await runWorker(plugin, {
        options: raw,
        pluginDir,
        technique: checked.technique,
        during: async (live) => {
          expect(vhostQueues(vhost)).toContain(traceQueueName({ taskId: 'test', tracerId: 1 }));
          expect(
            queueArguments(vhost, traceQueueName({ taskId: 'test', tracerId: 1 })),
          ).toMatchObject({
            'x-max-length': 100_000,
            'x-overflow': 'drop-head',
          });
          for (let i = 0; i < K; i++) {
            const rid = `req-${randomUUID()}`;
            requestIds.push(rid);
            const t0 = performance.now();
            const reply = await client.call(
              'compute.host1',
              'build_instances',
              { instances: [i], admin_password: 'hunter2' },
              context(TOKEN, rid),
            );
            clientMs.push(performance.now() - t0);
            expect(reply).not.toBe('timeout');
          }
          for (let i = 0; i < C; i++)
            client.cast('compute', 'terminate_instance', { instance: i }, context(TOKEN));
          client.cast('compute', 'refresh_cache', {}, context(TOKEN), true);
          expect(await client.call('compute', 'get_console_output', {}, context(TOKEN))).not.toBe(
            'timeout',
          );
          expect(await client.call('compute', 'never_answers', {}, context(TOKEN), 0.3)).toBe(
            'timeout',
          );
          client.notify(
            'notifications.info',
            'compute.instance.create.end',
            { id: 1 },
            context(TOKEN),
          );
          await client.flush();
          // Until a tick has passed never_answers' 0.3 s deadline on the tracer's clock (however
          // late the tracer read that call's trace copy), and the notification has been seen.
          await waitFor(
            'the timeout and the notification in the records',
            () =>
              live.records.some((r) => r.kind === 'sample' && r.series === 'rpc.timeouts') &&
              live.records.some((r) => r.kind === 'sample' && r.series === 'rpc.notifications'),
          );
        },
      });
    } finally {
      await client.close();
      await server.close();
      await runUndo(journal, options);
    }
    const { outcome, records } = result;
    expect(outcome.status).toBe('stopped');
    expect(outcome.parseErrors).toBe(0);
    expect(server.received.filter((r) => r.method === 'build_instances')).toHaveLength(K);

    const build = 'nova/compute.build_instances';
    expect(sums(records, 'rpc.calls')).toEqual({
      [build]: K,
      'nova/compute.get_console_output': 1,
      'nova/compute.never_answers': 1,
    });
    expect(sums(records, 'rpc.replies')).toEqual({
      [build]: K,
      'nova/compute.get_console_output': 1,
    });
    expect(sums(records, 'rpc.casts')).toEqual({ 'nova/compute.terminate_instance': C });
    expect(sums(records, 'rpc.fanouts')).toEqual({ 'compute_fanout/compute.refresh_cache': 1 });
    expect(sums(records, 'rpc.failures')).toEqual({ 'nova/compute.get_console_output': 1 });
    expect(sums(records, 'rpc.timeouts')).toEqual({ 'nova/compute.never_answers': 1 });
    expect(sums(records, 'rpc.notifications')).toEqual({
      'nova/notifications.info:compute.instance.create.end': 1,
    });
    // Every call, cast and reply was delivered to a consumer too.
    expect(sums(records, 'rpc.deliveries')[build]).toBe(2 * K);

    // Latency from the stamps: at least the server's artificial delay, and not more than what the
    // client itself waited (the call is stamped after the client's clock started, the reply
    // before it arrives), to the millisecond of the stamps, however loaded the machine is.
    const p50 = last(records, 'rpc.latency.p50', build)!;
    const p99 = last(records, 'rpc.latency.p99', build)!;
    const clientP50 = [...clientMs].sort((a, b) => a - b)[Math.ceil(K / 2) - 1]!;
    console.log(
      `rpc-calls latency p50: tracer ${p50} ms, client ${clientP50.toFixed(3)} ms, server delay ${DELAY_MS} ms`,
    );
    expect(p50).toBeGreaterThanOrEqual(DELAY_MS - 1);
    expect(p50).toBeLessThanOrEqual(clientP50 + 1);
    expect(p99).toBeGreaterThanOrEqual(p50);
    // With deliver: the time calls waited in their queue, a part of their latency.
    const queueWait = last(records, 'rpc.queue_wait.p50', build)!;
    expect(queueWait).toBeGreaterThanOrEqual(0);
    expect(queueWait).toBeLessThan(p50);
    const buckets = sums(
      records.filter((r) => r.kind === 'sample' && r.labels?.method === build),
      'rpc.latency',
      'le',
    );
    expect(buckets['+Inf']).toBe(K);
    expect(buckets['20'] ?? 0).toBe(0);

    // One call event per call, carrying its request id and latency.
    const calls = records.filter(
      (r): r is TraceEvent => r.kind === 'event' && r.type === 'rpc.call' && r.key === build,
    );
    expect(calls.map((e) => e.data?.requestId).sort()).toEqual([...requestIds].sort());
    for (const e of calls) {
      expect(e.data?.outcome).toBe('reply');
      expect(e.data?.clock).toBe('broker');
      expect(e.durationMs).toBeGreaterThanOrEqual(DELAY_MS - 1);
      expect(e.data?.server).toBe('host1');
      expect(e.data?.args).toEqual(['instances', 'admin_password']);
    }

    // No secret from a context or an argument anywhere in what would be stored.
    const stored = JSON.stringify(records);
    expect(stored).not.toContain(TOKEN);
    expect(stored).not.toContain('hunter2');
    expect(stored).not.toContain('Instance 42 could not be found');

    // Traffic to the broker port was sampled: at least the bodies the client published.
    const toBroker = sums(records, 'rpc.traffic.bytes', 'direction')['to-broker'] ?? 0;
    const published = sums(records, 'rpc.bytes', 'kind');
    expect(toBroker).toBeGreaterThan((published.call ?? 0) + (published.cast ?? 0));

    // The worker reported how far behind the broker it was.
    expect(records.some((r) => r.kind === 'sample' && r.series === 'rpc.trace.backlog')).toBe(true);

    // Stopped and undone: tracing off again, trace queue and counters table gone.
    expect(nftTables()).not.toContain(nftTableName('test', 1));
    expect(vhostTracing(vhost)).toBe(false);
    expect(vhostQueues(vhost).filter((q) => q.startsWith('scalpels.rpc-calls.'))).toEqual([]);
    // Each rabbitmqctl call starts an Erlang VM: seconds apiece on a busy machine.
  }, 240_000);

  it('heartbeats keep a monitored call alive, a silent one times out after _timeout, a pre-reply-queue reply is matched', async () => {
    const raw = { vhost, interval: '200ms', traffic: false };
    const options = validateOptions(plugin, raw);
    const { journal } = await runSetup(options, 'test', 'firehose');
    const server = await OsloServer.start(amqpUrl(vhost), {
      exchange: 'nova',
      topic: 'conductor',
      server: 'h',
      delayMs: 5,
      delays: { build_and_run: 1200 },
      silent: ['never_answers'],
    });
    const client = await OsloClient.connect(amqpUrl(vhost), 'nova');
    let result;
    try {
      result = await runWorker(plugin, {
        options: raw,
        pluginDir,
        technique: 'firehose',
        during: async () => {
          // _timeout 0.4 s: without the heartbeats sent every 0.2 s, 1.2 s of work would time out.
          expect(
            await client.call('conductor', 'build_and_run', {}, context('t'), 60, 0.4),
          ).not.toBe('timeout');
          expect(await client.call('conductor', 'never_answers', {}, context('t'), 1, 0.4)).toBe(
            'timeout',
          );
          // And a call the way oslo.messaging did before reply queues.
          expect(await client.legacyCall('conductor', 'ping', {}, context('t'))).toMatchObject({
            result: { ok: true },
          });
          // No wait for the last trace copies: the worker drains its queue when it is stopped.
        },
      });
    } finally {
      await client.close();
      await server.close();
      await runUndo(journal, options);
    }
    const { records } = result;
    expect(sums(records, 'rpc.calls')).toEqual({
      'nova/conductor.build_and_run': 1,
      'nova/conductor.never_answers': 1,
      'nova/conductor.ping': 1,
    });
    expect(sums(records, 'rpc.replies')).toEqual({
      'nova/conductor.build_and_run': 1,
      'nova/conductor.ping': 1,
    });
    expect(sums(records, 'rpc.timeouts')).toEqual({ 'nova/conductor.never_answers': 1 });
    // Unstamped messages (a 3.10 broker): latency from the tracer's receive times. The whole 1.2 s
    // of work, not the 0.2 s to the first heartbeat: the bound sits between the two, so a tracer
    // stalled for a while on a busy host still tells them apart.
    expect(last(records, 'rpc.latency.p50', 'nova/conductor.build_and_run')).toBeGreaterThan(700);
    expect(vhostTracing(vhost)).toBe(false);
  });

  it('leaves tracing on when it was on before the tracer started', async () => {
    const raw = { vhost, interval: '200ms' };
    const options = validateOptions(plugin, raw);
    await plugin.undo!(
      { kind: 'rabbitmq-trace-on', data: { vhost, wasOn: true }, description: '' },
      options,
    );
    const { execFileSync } = await import('node:child_process');
    execFileSync('rabbitmqctl', ['-q', 'trace_on', '-p', vhost]);
    try {
      const { journal } = await runSetup(options, 'pre-on');
      expect(journal.map((a) => a.kind)).toEqual(['rabbitmq-trace-queue']);
      const { outcome } = await runWorker(plugin, { options: raw, pluginDir, durationMs: 500 });
      expect(outcome.status).toBe('stopped');
      await runUndo(journal, options);
      expect(vhostTracing(vhost)).toBe(true);
    } finally {
      execFileSync('rabbitmqctl', ['-q', 'trace_off', '-p', vhost]);
    }
  });
});
