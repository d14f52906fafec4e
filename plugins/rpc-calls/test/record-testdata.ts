/**
 * Records testdata from the real worker against the real RabbitMQ (not a test: run on purpose with
 * `npx vitest run -c plugins/rpc-calls/test/record.vitest.config.ts` after `npx tsc -b`).
 * Writes testdata/<case>/stdout.txt, options.json, truth.json (what the workload did, counted by
 * the client and the server, independent of the parser) and, from the parser, expected.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'vitest';
import { parseTestdataCase, loadTestdata } from '@scalpels/core/testing';
import { validateOptions } from '@scalpels/core';
import plugin from '../src/index.js';
import {
  amqpUrl,
  context,
  createVhost,
  deleteVhost,
  OsloClient,
  OsloServer,
} from './fixtures/oslo-peer.mjs';
import { pluginDir, runSetup, runUndo } from './helpers.js';

const VERSION = '3.10.8';

async function record(
  name: string,
  raw: Record<string, unknown>,
  technique?: string,
  stamp = false,
): Promise<void> {
  const vhost = `scalpels-record-${name}`;
  createVhost(vhost);
  const options = validateOptions(plugin, { ...raw, vhost });
  const { journal } = await runSetup(options, `record-${name}`, technique);
  const spec = await plugin.worker(options, {
    target: { kind: 'none', pids: [], description: '' },
    taskId: `record-${name}`,
    tracerId: 1,
    technique,
    runtimeDir: '/tmp',
    pluginDir,
  });
  const child = spawn(spec.argv[0]!, spec.argv.slice(1), { env: { ...process.env, ...spec.env } });
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.pipe(process.stderr);
  while (!stdout.includes('"type":"ready"')) await new Promise((r) => setTimeout(r, 20));

  const truth = {
    calls: {} as Record<string, number>,
    casts: 0,
    fanouts: 0,
    notifications: 0,
    timeouts: 0,
  };
  const server = await OsloServer.start(amqpUrl(vhost), {
    exchange: 'nova',
    topic: 'compute',
    server: 'host1',
    delayMs: 30,
    failing: ['get_console_output'],
    silent: ['never_answers'],
    stamp,
  });
  const client = await OsloClient.connect(amqpUrl(vhost), 'nova', stamp);
  const call = async (target: string, method: string, timeoutS = 60): Promise<void> => {
    truth.calls[method] = (truth.calls[method] ?? 0) + 1;
    const r = await client.call(
      target,
      method,
      { instance: 1 },
      context('SECRET-TOKEN-must-not-be-recorded'),
      timeoutS,
    );
    if (r === 'timeout') truth.timeouts++;
  };
  for (let i = 0; i < 5; i++) await call('compute.host1', 'build_instances');
  await call('compute', 'get_console_output');
  await call('compute', 'never_answers', 0.5);
  for (let i = 0; i < 3; i++) {
    client.cast(
      'compute',
      'terminate_instance',
      { instance: i },
      context('SECRET-TOKEN-must-not-be-recorded'),
    );
    truth.casts++;
  }
  client.cast('compute', 'refresh_cache', {}, context('SECRET-TOKEN-must-not-be-recorded'), true);
  truth.fanouts++;
  client.notify('notifications.info', 'compute.instance.create.end', { id: 1 }, context('x'));
  truth.notifications++;
  await client.flush();
  await new Promise((r) => setTimeout(r, 1500));
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await client.close();
  await server.close();
  await runUndo(journal, options);
  deleteVhost(vhost);

  const dir = join(pluginDir, 'testdata', `rabbitmq-${VERSION}-${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'stdout.txt'), stdout);
  writeFileSync(
    join(dir, 'options.json'),
    `${JSON.stringify({ ...raw, ...(technique ? { technique } : {}) }, null, 2)}\n`,
  );
  writeFileSync(
    join(dir, 'truth.json'),
    `${JSON.stringify({ ...truth, serverReceived: server.received.length }, null, 2)}\n`,
  );
  const c = loadTestdata(join(pluginDir, 'testdata')).find(
    (x) => x.name === `rabbitmq-${VERSION}-${name}`,
  )!;
  const parsed = parseTestdataCase(plugin, c);
  writeFileSync(
    join(dir, 'expected.json'),
    `${JSON.stringify({ records: parsed.records, parseErrors: parsed.diagnostics.length, dropped: parsed.dropped }, null, 2)}\n`,
  );
}

// RECORD=name,name records only those cases (all by default).
const only = process.env.RECORD?.split(',');
const want = (name: string): boolean => !only || only.includes(name);

it('records rabbitmq firehose testdata', { timeout: 120_000 }, async () => {
  if (want('oslo-rpc')) await record('oslo-rpc', { interval: '500ms' }, 'firehose+ss');
  if (want('oslo-rpc-deliver-events'))
    await record(
      'oslo-rpc-deliver-events',
      { interval: '500ms', deliver: true, events: true },
      'firehose+ss',
    );
  if (want('oslo-rpc-nft'))
    await record('oslo-rpc-nft', { interval: '500ms', events: true }, 'firehose+nft');
  // Messages stamped with timestamp_in_ms (what a 3.12+ broker with set_header_timestamp adds;
  // the peers stamp them here, see oslo-peer.mjs): latencies come from those stamps.
  if (want('oslo-rpc-broker-stamps'))
    await record('oslo-rpc-broker-stamps', { interval: '500ms', events: true }, 'firehose', true);
});
