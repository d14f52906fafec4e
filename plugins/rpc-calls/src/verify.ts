/**
 * `scalpels plugins validate rpc-calls ...`: everything a start would do, short of changing the
 * broker: log in, find the firehose exchange, declare and bind a queue like the trace queue (the
 * permissions it needs), read the tracing switch, and pick the traffic technique.
 */
import type { CheckContext, Technique, VerifyStage } from '@scalpels/core';
import { brokerAdmin, brokerPassword, switchNodes } from './broker.js';
import { tracedVhost } from './vhosts.js';
import type { Options } from './options.js';

export async function verify(
  ctx: CheckContext<Options>,
  techniques: readonly Technique<Options>[],
): Promise<VerifyStage[]> {
  const o = ctx.options;
  const { host, port, user } = o;
  const { vhost } = tracedVhost(o);
  const stages: VerifyStage[] = [];
  const skipRest = (names: string[], why: string): void => {
    for (const stage of names) stages.push({ stage, status: 'skipped', detail: why });
  };

  const amqp = (await import('amqplib')).default;
  let conn: Awaited<ReturnType<typeof amqp.connect>> | undefined;
  try {
    try {
      conn = await amqp.connect(
        {
          protocol: o.tls ? 'amqps' : 'amqp',
          hostname: host,
          port,
          vhost,
          username: user,
          password: brokerPassword(o),
        },
        { timeout: 5000 },
      );
      stages.push({
        stage: 'broker',
        status: 'passed',
        detail: `logged in to ${host}:${port} vhost ${vhost} as ${user}`,
      });
    } catch (e) {
      stages.push({
        stage: 'broker',
        status: 'failed',
        detail: `${host}:${port} vhost ${vhost} as ${user}: ${(e as Error).message}`,
      });
      skipRest(['firehose exchange', 'trace queue'], 'no broker connection');
    }
    if (conn) {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      try {
        await ch.checkExchange('amq.rabbitmq.trace');
        stages.push({
          stage: 'firehose exchange',
          status: 'passed',
          detail: 'amq.rabbitmq.trace exists',
        });
        // Same kind of queue and binding as the worker's, removed at once: proves the permissions.
        const q = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
        await ch.bindQueue(q.queue, 'amq.rabbitmq.trace', 'publish.#');
        await ch.deleteQueue(q.queue);
        stages.push({
          stage: 'trace queue',
          status: 'passed',
          detail: 'may declare a queue and bind it to amq.rabbitmq.trace',
        });
      } catch (e) {
        const failed =
          stages.at(-1)?.stage === 'firehose exchange' ? 'trace queue' : 'firehose exchange';
        stages.push({ stage: failed, status: 'failed', detail: (e as Error).message });
        if (failed === 'firehose exchange') skipRest(['trace queue'], 'no firehose exchange');
      }
    }
  } finally {
    await conn?.close().catch(() => undefined);
  }

  for (const node of switchNodes(o)) {
    const admin = brokerAdmin(o, node);
    try {
      const on = await admin.tracing(vhost);
      stages.push({
        stage: 'tracing switch',
        status: 'passed',
        detail: on
          ? `tracing is already on for ${vhost} (${admin.describe()}): the tracer will use it and leave it on`
          : `tracing is off for ${vhost}: the tracer turns it on and back off (${admin.describe()})`,
      });
    } catch (e) {
      stages.push({
        stage: 'tracing switch',
        status: 'failed',
        detail: (e as Error).message.split('\n')[0]!,
      });
    }
  }

  for (const t of techniques) {
    const r = await t.check(ctx);
    if (r.status === 'ok') {
      stages.push({
        stage: 'traffic',
        status: 'passed',
        detail: `technique ${t.name}: ${r.detail}`,
      });
      break;
    }
  }
  return stages;
}
