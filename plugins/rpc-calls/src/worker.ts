import { join } from 'node:path';
import type { OptionValues, WorkerContext, WorkerSpec } from '@scalpels/core';
import { brokerPassword } from './broker.js';
import { DEFAULT_CONTEXT_FIELDS } from './oslo.js';
import { CONFIG_ENV, PASSWORD_ENV, type WorkerConfig } from './wire.js';

/** The trace queue's name: known before the worker starts, so setup can journal its removal. */
export function traceQueueName(ctx: Pick<WorkerContext, 'taskId' | 'tracerId'>): string {
  return `scalpels.rpc-calls.${ctx.taskId}.${ctx.tracerId}`;
}

export function workerConfig(
  options: OptionValues,
  ctx: Pick<WorkerContext, 'taskId' | 'tracerId'>,
  ss?: string,
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
    contextFields: [
      ...((options['context-fields'] as readonly string[] | undefined) ?? DEFAULT_CONTEXT_FIELDS),
    ],
    trafficPorts: options.traffic === false || !ss ? [] : [port],
    ss,
    tls: options.tls === true,
  };
}

/** The worker is a Node script run by the same Node binary; its settings and password go in env. */
export function workerSpec(options: OptionValues, ctx: WorkerContext, ss?: string): WorkerSpec {
  return {
    argv: [process.execPath, join(ctx.pluginDir, 'dist', 'worker-main.js')],
    env: {
      [CONFIG_ENV]: JSON.stringify(workerConfig(options, ctx, ss)),
      [PASSWORD_ENV]: brokerPassword(options),
    },
    stop: { signal: 'SIGTERM', graceMs: 5000 },
    ready: { stdout: /^\{"type":"ready"/, timeoutMs: 30_000 },
  };
}
