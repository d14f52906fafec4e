/**
 * The rpc-calls worker: consumes RabbitMQ's firehose for one vhost through an exclusive,
 * auto-delete queue bound to `amq.rabbitmq.trace`, and prints one JSON line per traced message
 * (already reduced: no arguments, no results, no secrets), a tick line per interval, and the
 * traffic to the broker port. Configuration comes from the environment, never argv.
 */
import type { Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import { announceReady } from '@scalpels/core/api';
import amqp from 'amqplib';
import { summarizeTraced, type FirehoseHeaders } from './oslo.js';
import type { TrafficThreadData, TrafficThreadMessage } from './traffic-sampler.js';
import {
  CONFIG_ENV,
  PASSWORD_ENV,
  type TrafficConfig,
  type WireLine,
  type WorkerConfig,
} from './wire.js';

const TRACE_EXCHANGE = 'amq.rabbitmq.trace';
/** Longest a stop waits for trace copies still in flight, and the quiet time that ends it. */
const DRAIN_MS = 2000;
const QUIET_MS = 150;

function now(): number {
  return performance.timeOrigin + performance.now();
}

// Lines are gathered and written once per event-loop turn: one write per burst of messages
// instead of one per message (stdout to a pipe is a synchronous write on Linux).
let pending: string[] = [];
function emit(line: WireLine): void {
  if (pending.length === 0) setImmediate(flushLines);
  pending.push(JSON.stringify(line));
}
function flushLines(): void {
  if (pending.length === 0) return;
  const text = `${pending.join('\n')}\n`;
  pending = [];
  process.stdout.write(text);
}

function fail(message: string): never {
  flushLines();
  process.stderr.write(`rpc-calls worker: ${message}\n`);
  process.exit(1);
}

/**
 * Runs the traffic sampler in a worker thread: spawning `nft`/`ss` forks the process, which
 * stalls the calling thread for a millisecond or more, and that stall would skew the receive
 * time stamps (hence call latencies) of the firehose messages handled by the main thread.
 */
async function trafficThread(
  traffic: TrafficConfig | undefined,
  ownPorts: number[],
): Promise<{ sample: () => Promise<void>; close: () => Promise<void> }> {
  if (!traffic) return { sample: async () => undefined, close: async () => undefined };
  const thread = new Worker(new URL('./traffic-thread.js', import.meta.url), {
    workerData: { traffic, ownPorts } satisfies TrafficThreadData,
  });
  const waiting: (() => void)[] = [];
  thread.on('message', (m: TrafficThreadMessage) => {
    if (m.kind === 'line') emit(m.line);
    else if (m.kind === 'error') process.stderr.write(`rpc-calls worker: ${m.message}\n`);
    else if (m.kind === 'sampled') waiting.shift()?.();
  });
  thread.on('error', (e) => fail(`traffic sampler: ${e.message}`));
  const sample = (): Promise<void> =>
    new Promise((resolve) => {
      waiting.push(resolve);
      thread.postMessage('sample');
    });
  return { sample, close: async () => void (await thread.terminate()) };
}

async function main(): Promise<void> {
  const raw = process.env[CONFIG_ENV];
  if (!raw) fail(`${CONFIG_ENV} is not set`);
  const config = JSON.parse(raw) as WorkerConfig;
  const password = process.env[PASSWORD_ENV] ?? 'guest';
  let stopping = false;

  const connection = await amqp
    .connect({
      protocol: config.tls ? 'amqps' : 'amqp',
      hostname: config.host,
      port: config.port,
      vhost: config.vhost,
      username: config.user,
      password,
      heartbeat: 30,
    })
    .catch((e: Error) =>
      fail(`cannot connect to ${config.host}:${config.port} vhost ${config.vhost}: ${e.message}`),
    );
  connection.on('error', (e: Error) => fail(`connection error: ${e.message}`));
  connection.on('close', () => {
    if (!stopping) fail('connection to the broker closed');
  });
  const channel = await connection.createChannel();
  channel.on('error', (e: Error) => fail(`channel error: ${e.message}`));

  // Exclusive + auto-delete: the broker removes the queue as soon as this connection is gone,
  // even when the worker is killed. The name is known in advance so `recover` can delete it too.
  await channel
    .assertQueue(config.queue, {
      exclusive: true,
      autoDelete: true,
      durable: false,
      // A tracer that falls behind must not eat the broker's memory: drop the oldest copies.
      arguments: { 'x-max-length': config.maxBacklog, 'x-overflow': 'drop-head' },
    })
    .catch((e: Error) => fail(`cannot declare the trace queue ${config.queue}: ${e.message}`));
  const bindings = ['publish.#', ...(config.deliver ? ['deliver.#'] : [])];
  for (const pattern of bindings) await channel.bindQueue(config.queue, TRACE_EXCHANGE, pattern);

  const contextFields = config.contextFields;
  let lastMessageAt = 0;
  await channel.consume(
    config.queue,
    (m) => {
      if (!m) {
        if (!stopping) fail('the broker cancelled the trace consumer');
        return;
      }
      const headers = (m.properties.headers ?? {}) as FirehoseHeaders;
      lastMessageAt = performance.now();
      emit(summarizeTraced(now(), m.fields.routingKey, headers, m.content, contextFields));
    },
    { noAck: true, exclusive: true },
  );
  const stream = (connection.connection as unknown as { stream?: Socket }).stream;
  const traffic = await trafficThread(config.traffic, stream?.localPort ? [stream.localPort] : []);
  const sampleTraffic = traffic.sample;
  await sampleTraffic();
  // Ready only now: `scalpels run` starts the workload on this line, and the traffic baseline is taken.
  emit({
    type: 'ready',
    ts: now(),
    queue: config.queue,
    vhost: config.vhost,
    bindings,
    ...(config.otherVhosts ? { otherVhosts: config.otherVhosts } : {}),
  });
  flushLines();
  announceReady();

  let busy = false;
  const timer = setInterval(() => {
    emit({ type: 'tick', ts: now() });
    channel.checkQueue(config.queue).then(
      (q) => emit({ type: 'backlog', ts: now(), messages: q.messageCount }),
      () => undefined,
    );
    if (busy) return;
    busy = true;
    void sampleTraffic().finally(() => (busy = false));
  }, config.intervalMs);

  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    // Trace copies of the workload's last messages may still be on their way (`scalpels run`
    // stops the tracers as soon as the workload exits): drain until the trace queue is empty
    // and nothing arrived for a moment, at most DRAIN_MS.
    const drainUntil = performance.now() + DRAIN_MS;
    while (performance.now() < drainUntil) {
      const queued = await channel.checkQueue(config.queue).then(
        (q) => q.messageCount,
        () => 0,
      );
      if (queued === 0 && performance.now() - lastMessageAt >= QUIET_MS) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    await sampleTraffic();
    await traffic.close();
    emit({ type: 'tick', ts: now() });
    // Closing the connection deletes the exclusive queue; a broker that hangs must not keep us.
    await Promise.race([
      connection.close().catch(() => undefined),
      new Promise((r) => setTimeout(r, 2000)),
    ]);
    flushLines();
    process.stdout.write('', () => process.exit(0));
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

main().catch((e: unknown) => fail(e instanceof Error ? e.message : String(e)));
