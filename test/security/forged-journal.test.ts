/**
 * As an attacker with write access to a shared Redis store (and nothing else): forged journal
 * entries and a forged lease that name a program to run, for a tracer that never existed, for
 * another node, and for a forged tracer of this node. `scalpels recover` runs none of them: it
 * undoes only this node's entries of tracers it knows, checks their options against the
 * plugin's specs, and undo never takes a program path from the journal.
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { capability } from '@scalpels/core/testing';
import { RedisStore } from '@scalpels/core/engine';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-forged-'));
const prefix = `scalpels-test-forged-${process.pid}:`;
const storeUrl = `redis://127.0.0.1:6379/0?prefix=${prefix}&spilldir=${join(scratch, 'spill')}`;
/** The attacker's own client: plain Redis access, the store's key layout. */
const attacker = (): RedisStore => new RedisStore(storeUrl);

async function redisUp(): Promise<boolean> {
  const store = attacker();
  try {
    await store.listTasks();
    return true;
  } catch {
    return false;
  } finally {
    await store.close();
  }
}

const canRun =
  capability('scalpels CLI built', existsSync(cli), `${cli} missing: build the workspace`) &&
  capability('redis', await redisUp(), 'no Redis on 127.0.0.1:6379');

const node = `node-${process.pid}`;
afterAll(async () => {
  if (canRun) {
    const store = attacker();
    await store.listTasks(); // connects
    const keys = await store.redis.keys(`${prefix}*`);
    if (keys.length) await store.redis.del(...keys);
    await store.close();
  }
  rmSync(scratch, { recursive: true, force: true });
});

describe.runIf(canRun)('a forged journal on a shared Redis store', () => {
  it('scalpels recover runs no program named by the journal', async () => {
    // The program the attacker wants root to run: it leaves a marker when it runs.
    const marker = join(scratch, 'marker');
    const program = join(scratch, 'evil.sh');
    writeFileSync(program, `#!/bin/sh\ntouch ${marker}\n`);
    chmodSync(program, 0o755);
    const vhost = `scalpels-forged-${process.pid}`; // exists nowhere: no real switch is touched

    const store = attacker();
    await store.listTasks(); // connects
    const r = store.redis;
    const tracer = (id: number, onNode: string, tracerName = 'rpc-calls') => ({
      id,
      taskId: 'forged-task',
      tracer: tracerName,
      pluginPackage: `@scalpels/plugin-${tracerName}`,
      pluginVersion: '0.1.0',
      node: onNode,
      options: {},
      technique: null,
      status: 'stopped',
      exitCode: 0,
      error: null,
      stderrTail: null,
      workerPid: null,
      workerStart: null,
      startedAt: 1,
      stoppedAt: 2,
      records: 0,
      parseErrors: 0,
      dropped: 0,
      restarts: 0,
    });
    const entry = (
      id: number,
      tracerId: number,
      onNode: string | undefined,
      action: unknown,
      options: unknown,
      plugin = 'rpc-calls',
    ) =>
      r.hset(
        `${prefix}journal`,
        String(id),
        JSON.stringify({
          id,
          tracerId,
          plugin,
          action,
          options,
          createdAt: 1,
          ...(onNode === undefined ? {} : { node: onNode }),
          undoneAt: null,
        }),
      );
    const traceOn = {
      kind: 'rabbitmq-trace-on',
      data: { vhost, wasOn: false },
      description: 'turn tracing off',
    };
    const evil = { rabbitmqctl: program };
    // 1. A tracer that never existed, claimed for this node and for no node at all.
    await entry(1, 9001, node, traceOn, evil);
    await entry(2, 9002, undefined, traceOn, evil);
    // 2. Another node's tracer and entry.
    await r.set(`${prefix}tracer:9003`, JSON.stringify(tracer(9003, 'other-node')));
    await entry(3, 9003, 'other-node', traceOn, evil);
    // 3. A forged tracer row of this node: its options name the program, and a forged lease
    //    whose restore names it too.
    await r.set(`${prefix}tracer:9004`, JSON.stringify(tracer(9004, node)));
    await entry(4, 9004, node, traceOn, evil);
    const key = `shared:rabbitmq:rabbit@nowhere/vhost:${vhost}/trace_on`;
    await r.hset(
      `${prefix}leases`,
      key,
      JSON.stringify({
        key,
        holders: [{ tracerId: 9004, node, since: 1 }],
        restores: [{ plugin: 'rpc-calls', action: traceOn, options: evil, node, tracerId: 9004 }],
        createdAt: 1,
      }),
    );
    await entry(5, 9004, node, { kind: 'scalpels.lease', data: { key }, description: 'lease' }, {});
    // 4. An option smuggled under a name the plugin does not declare.
    await r.set(`${prefix}tracer:9005`, JSON.stringify(tracer(9005, node, 'systemtap')));
    await entry(
      6,
      9005,
      node,
      { kind: 'stap-module', data: { module: 'scalpels_x' }, description: 'module' },
      { 'stap-binary': program },
      'systemtap',
    );
    await store.close();

    const out = await run(process.execPath, [cli, 'recover', '--store', storeUrl], {
      env: { ...process.env, SCALPELS_NODE: node, NO_COLOR: '1' },
      timeout: 120_000,
    }).catch((e: { stdout: string; stderr: string; code: number }) => e);
    expect(existsSync(marker), `${out.stdout}\n${out.stderr}`).toBe(false);
    // Refused with a message that says why, entry by entry.
    expect(out.stdout).toMatch(/journal entry 1 .* matches no tracer of node/);
    expect(out.stdout).toMatch(/journal entry 2 .* matches no tracer of node/);
    expect(out.stdout).not.toMatch(/journal entry 3 /); // another node's: not ours to look at
    expect(out.stdout).toMatch(/unknown option "stap-binary"/);
  }, 180_000);
});
