import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capability, runWorker } from '@scalpels/core/testing';
import { validateOptions } from '@scalpels/core';
import plugin from '../src/index.js';
import { traceQueueName } from '../src/worker.js';
import {
  amqpUrl,
  context,
  OsloClient,
  OsloServer,
  vhostQueues,
  vhostTracing,
} from './fixtures/oslo-peer.mjs';
import { brokerTestsCanRun, checkContext, pluginDir, runSetup, runUndo, sums } from './helpers.js';

const hasPluginsTool = (): boolean => {
  try {
    execFileSync('rabbitmq-plugins', ['list', '-e', '-m'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
};
const live =
  (await brokerTestsCanRun()) &&
  capability(
    'rabbitmq-plugins',
    hasPluginsTool(),
    'rabbitmq-plugins missing or not allowed (run as root)',
  );

const MANAGEMENT = 'http://127.0.0.1:15672';
const vhost = `scalpels-test-rpc-mgmt-${randomUUID().slice(0, 8)}`;
let enabledByUs = false;

async function managementUp(): Promise<boolean> {
  try {
    const auth = Buffer.from('guest:guest').toString('base64');
    return (
      await fetch(`${MANAGEMENT}/api/overview`, { headers: { authorization: `Basic ${auth}` } })
    ).ok;
  } catch {
    return false;
  }
}

const HOOK_MS = 600_000;

describe.runIf(live)('rpc-calls through the management API', () => {
  beforeAll(async () => {
    // The management plugin is a broker setting: turned on for this test only if it was off.
    const enabled = execFileSync('rabbitmq-plugins', ['list', '-e', '-m']).toString();
    if (!enabled.split('\n').includes('rabbitmq_management')) {
      execFileSync('rabbitmq-plugins', ['enable', 'rabbitmq_management'], { stdio: 'pipe' });
      enabledByUs = true;
    }
    for (let i = 0; i < 100 && !(await managementUp()); i++)
      await new Promise((r) => setTimeout(r, 200));
    execFileSync('rabbitmqctl', [
      '-q',
      'add_vhost',
      vhost,
      '--description',
      'keep this',
      '--tags',
      'scalpels,test',
    ]);
    execFileSync('rabbitmqctl', ['-q', 'set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*']);
    // Each rabbitmqctl / rabbitmq-plugins starts an Erlang VM: seconds each, far more on a busy host.
  }, HOOK_MS);
  afterAll(() => {
    execFileSync('rabbitmqctl', ['-q', 'delete_vhost', vhost]);
    if (enabledByUs)
      execFileSync('rabbitmq-plugins', ['disable', 'rabbitmq_management'], { stdio: 'pipe' });
  }, HOOK_MS);

  it('switches tracing over HTTP, keeps the vhost description and tags, and undoes it', async () => {
    const raw = { vhost, 'management-url': MANAGEMENT, traffic: false, interval: '200ms' };
    const options = validateOptions(plugin, raw);
    // The check must not need rabbitmqctl on PATH when the management API is configured.
    const checked = await plugin.check({
      ...checkContext(options, 'full'),
      which: async () => undefined,
    });
    expect(checked).toMatchObject({ status: 'ok', technique: 'firehose' });
    expect(checked.detail).toContain('management API');

    const { journal } = await runSetup(options, 'test', checked.technique);
    expect(journal.map((a) => a.kind)).toEqual(['rabbitmq-trace-queue', 'rabbitmq-trace-on']);
    expect(vhostTracing(vhost)).toBe(true);
    const server = await OsloServer.start(amqpUrl(vhost), {
      exchange: 'nova',
      topic: 'compute',
      server: 'h',
      delayMs: 5,
    });
    const client = await OsloClient.connect(amqpUrl(vhost), 'nova');
    let result;
    try {
      result = await runWorker(plugin, {
        options: raw,
        pluginDir,
        technique: checked.technique,
        during: async () => {
          for (let i = 0; i < 3; i++) await client.call('compute', 'ping', {}, context('t'));
          // Everything is at the broker; the worker drains its trace queue when it is stopped.
          await client.flush();
        },
      });
    } finally {
      await client.close();
      await server.close();
      await runUndo(journal, options);
    }
    expect(sums(result.records, 'rpc.replies')).toEqual({ 'nova/compute.ping': 3 });
    expect(vhostTracing(vhost)).toBe(false);
    expect(vhostQueues(vhost)).not.toContain(traceQueueName({ taskId: 'test', tracerId: 1 }));
    const row = (
      JSON.parse(
        execFileSync('rabbitmqctl', [
          '-q',
          '--formatter',
          'json',
          'list_vhosts',
          'name',
          'description',
          'tags',
        ]).toString(),
      ) as { name: string; description: string; tags: string[] }[]
    ).find((v) => v.name === vhost)!;
    expect(row.description).toBe('keep this');
    expect([...row.tags].sort()).toEqual(['scalpels', 'test']);
    // Undo is idempotent: a second recover changes nothing and does not fail.
    await runUndo(journal, options);
    expect(vhostTracing(vhost)).toBe(false);
  });
});
