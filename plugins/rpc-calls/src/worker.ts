import { join } from 'node:path';
import { readyLine, type WorkerContext, type WorkerSpec } from '@scalpels/core';
import { brokerPassword } from './broker.js';
import { nftTableName } from './nft.js';
import { tracedVhost } from './vhosts.js';
import { CONFIG_ENV, PASSWORD_ENV, type TrafficConfig, type WorkerConfig } from './wire.js';
import type { Options } from './options.js';

/** The trace queue's name: known before the worker starts, so setup can journal its removal. */
export function traceQueueName(ctx: Pick<WorkerContext, 'taskId' | 'tracerId'>): string {
  return `scalpels.rpc-calls.${ctx.taskId}.${ctx.tracerId}`;
}

/** Traffic measurement: `firehose+nft` (setup made the table), `firehose+ss`, or none. */
export const TECHNIQUES = ['firehose+nft', 'firehose+ss', 'firehose'] as const;
export type TechniqueName = (typeof TECHNIQUES)[number];

export interface Tools {
  ss?: string;
  nft?: string;
}

function trafficConfig(
  options: Options,
  ctx: Pick<WorkerContext, 'taskId' | 'tracerId' | 'technique'>,
  tools: Tools,
): TrafficConfig | undefined {
  const port = options.port;
  if (!options.traffic) return undefined;
  if (ctx.technique === 'firehose+nft' && tools.nft)
    return {
      mode: 'nft',
      nft: tools.nft,
      table: nftTableName(ctx.taskId, ctx.tracerId),
      port,
      ss: tools.ss,
    };
  if ((ctx.technique === 'firehose+ss' || ctx.technique === undefined) && tools.ss)
    return { mode: 'ss', ss: tools.ss, port };
  return undefined;
}

function vhostConfig(options: Options): { vhost: string; otherVhosts?: string[] } {
  const t = tracedVhost(options);
  return t.others.length > 0
    ? { vhost: t.vhost, otherVhosts: t.others.map((o) => o.vhost) }
    : { vhost: t.vhost };
}

export function workerConfig(
  options: Options,
  ctx: Pick<WorkerContext, 'taskId' | 'tracerId' | 'technique'>,
  tools: Tools,
): WorkerConfig {
  return {
    host: options.host,
    port: options.port,
    ...vhostConfig(options),
    user: options.user,
    queue: traceQueueName(ctx),
    deliver: options.deliver,
    intervalMs: options.interval,
    maxBacklog: options['max-backlog'],
    contextFields: [...options['context-fields']],
    traffic: trafficConfig(options, ctx, tools),
    tls: options.tls,
  };
}

/** The worker is a Node script run by the same Node binary; its settings and password go in env. */
export function workerSpec(options: Options, ctx: WorkerContext, tools: Tools): WorkerSpec {
  return {
    argv: [process.execPath, join(ctx.pluginDir, 'dist', 'worker-main.js')],
    env: {
      [CONFIG_ENV]: JSON.stringify(workerConfig(options, ctx, tools)),
      [PASSWORD_ENV]: brokerPassword(options),
    },
    stop: { signal: 'SIGTERM', graceMs: 5000 },
    ready: { stdout: readyLine(), timeoutMs: 30_000 },
  };
}
