import { join } from 'node:path';
import type { OptionValues, WorkerContext, WorkerSpec } from '@scalpels/core';
import { brokerPassword } from './broker.js';
import { nftTableName } from './nft.js';
import { DEFAULT_CONTEXT_FIELDS } from './oslo.js';
import { CONFIG_ENV, PASSWORD_ENV, type TrafficConfig, type WorkerConfig } from './wire.js';

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
  options: OptionValues,
  ctx: Pick<WorkerContext, 'taskId' | 'tracerId' | 'technique'>,
  tools: Tools,
): TrafficConfig | undefined {
  const port = Number(options.port ?? 5672);
  if (options.traffic === false) return undefined;
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

export function workerConfig(
  options: OptionValues,
  ctx: Pick<WorkerContext, 'taskId' | 'tracerId' | 'technique'>,
  tools: Tools,
): WorkerConfig {
  const port = Number(options.port ?? 5672);
  return {
    host: String(options.host ?? '127.0.0.1'),
    port,
    vhost: String(options.vhost ?? '/'),
    user: String(options.user ?? 'guest'),
    queue: traceQueueName(ctx),
    deliver: options.deliver === true,
    intervalMs: Number(options.interval ?? 1000),
    maxBacklog: Number(options['max-backlog'] ?? 100_000),
    contextFields: [
      ...((options['context-fields'] as readonly string[] | undefined) ?? DEFAULT_CONTEXT_FIELDS),
    ],
    traffic: trafficConfig(options, ctx, tools),
    tls: options.tls === true,
  };
}

/** The worker is a Node script run by the same Node binary; its settings and password go in env. */
export function workerSpec(options: OptionValues, ctx: WorkerContext, tools: Tools): WorkerSpec {
  return {
    argv: [process.execPath, join(ctx.pluginDir, 'dist', 'worker-main.js')],
    env: {
      [CONFIG_ENV]: JSON.stringify(workerConfig(options, ctx, tools)),
      [PASSWORD_ENV]: brokerPassword(options),
    },
    stop: { signal: 'SIGTERM', graceMs: 5000 },
    ready: { stdout: /^\{"type":"ready"/, timeoutMs: 30_000 },
  };
}
