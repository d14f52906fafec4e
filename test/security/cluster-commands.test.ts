import { chmodSync, chownSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '@scalpels/core/testing';
import { Cluster, ClusterKey, RedisStore, fieldMap } from '@scalpels/core/engine';
import {
  asNobody,
  childrenOf,
  cli,
  hasRedisServer,
  hasSetpriv,
  makeKeyFile,
  scratchDir,
  startAgent,
  waitFor,
  type RunningAgent,
} from './helpers.js';
import { privateRedisServers, type PrivateRedis } from '../private-redis.js';

/**
 * Promise: a Redis client without the cluster key can do nothing. Attacks run as they would be:
 * `redis-cli` as nobody writing straight into an agent's command stream, a signed start captured
 * from the stream replayed under a new request id and under its own, a stale one, a forged answer.
 */
const procs: ResultPromise[] = [];
const startRedis = privateRedisServers();
const scratch = scratchDir('cluster');
// A program the forged requests name; if it ever runs, it leaves this file.
const marker = join(scratch, 'marker-ran');
const markerScript = join(scratch, 'marker.sh');
writeFileSync(markerScript, `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
const keyFile = makeKeyFile(scratch);

afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await Promise.allSettled(procs);
  rmSync(scratch, { recursive: true, force: true });
});

const scalpels = (args: string[], env: Record<string, string> = {}) =>
  runCli(args, { cli, env: { NO_COLOR: '1', ...env }, timeoutMs: 0 });

describe.runIf(hasRedisServer && hasSetpriv)('cluster commands are signed', () => {
  let redis: PrivateRedis;
  let agent: RunningAgent;
  let store: RedisStore;
  const node = 'sec-node';
  const stream = `scalpels:commands:${node}`;
  /** redis-cli as nobody: any local user who can reach Redis. */
  const attackerRedis = (...args: string[]) =>
    asNobody('redis-cli', ['-p', String(redis.port), '--no-raw', ...args]);
  const tasks = async () => (await store.listTasks()).length;

  beforeAll(async () => {
    redis = await startRedis();
    agent = await startAgent(
      procs,
      [
        '--redis',
        redis.url,
        '--node',
        node,
        '--socket',
        join(scratch, 'agent.sock'),
        '--heartbeat',
        '500ms',
        '--cluster-key-file',
        keyFile,
      ],
      {},
      'cluster member',
    );
    store = new RedisStore(redis.url);
    await store.listTasks(); // connected
  });
  afterAll(async () => {
    agent?.proc.kill('SIGTERM');
    await agent?.proc;
    await store?.close();
  });

  it('an agent in cluster mode refuses to start without a key, or with a key others can read', async () => {
    const noKey = await scalpels(
      ['agent', '--redis', redis.url, '--node', 'x', '--socket', join(scratch, 'x.sock')],
      { SCALPELS_CLUSTER_KEY_FILE: '' },
    );
    expect(noKey.exitCode).toBe(1);
    expect(noKey.stderr).toMatch(/--redis needs --cluster-key-file/);
    const loose = makeKeyFile(scratch, 'loose.key');
    chmodSync(loose, 0o644);
    const readable = await scalpels([
      'agent',
      '--redis',
      redis.url,
      '--node',
      'x',
      '--socket',
      join(scratch, 'x.sock'),
      '--cluster-key-file',
      loose,
    ]);
    expect(readable.exitCode).toBe(1);
    expect(readable.stderr).toMatch(/has mode 644: chmod 600/);
    const foreign = makeKeyFile(scratch, 'foreign.key');
    chownSync(foreign, 65534, 65534);
    const owned = await scalpels(['nodes', '--redis', redis.url, '--cluster-key-file', foreign]);
    expect(owned.exitCode).toBe(1);
    expect(owned.stderr).toMatch(/owned by uid 65534, not root/);
  });

  it('a start written straight into the command stream by a client without the key starts nothing', async () => {
    const before = childrenOf(agent.proc.pid!).length;
    // The request of issue 14: one XADD, no credentials, as nobody.
    const plain = await attackerRedis(
      'XADD',
      stream,
      '*',
      'id',
      'evil-1',
      'method',
      'start',
      'params',
      JSON.stringify({ tracers: [{ name: 'proc', options: { interval: '100ms' } }] }),
    );
    expect(plain.exitCode, plain.stderr).toBe(0);
    // One with a made-up signature, and one naming a program through an option.
    await attackerRedis(
      'XADD',
      stream,
      '*',
      'id',
      'evil-2',
      'node',
      node,
      'method',
      'start',
      'params',
      JSON.stringify({ tracers: [{ name: 'python-calls', options: { python: markerScript } }] }),
      'ts',
      String(Date.now()),
      'from',
      'attacker',
      'sig',
      'ab'.repeat(32),
    );
    // Processed when the agent has taken them out of the stream.
    await waitFor('the agent to drop the forged entries', async () => {
      const left = await store.redis.xrange(stream, '-', '+');
      return !left.some(([, f]) => ['evil-1', 'evil-2'].includes(fieldMap(f).id ?? ''));
    });
    expect(await tasks()).toBe(0);
    expect(childrenOf(agent.proc.pid!).length).toBe(before);
    expect(existsSync(marker)).toBe(false);
    expect(agent.output()).toMatch(/refused unsigned command start from a Redis client without/);
    expect(agent.output()).toMatch(/refused badly signed command start/);
  });

  it('a flood of unsigned commands is logged once, not once per command', async () => {
    const lines = () =>
      agent
        .output()
        .split('\n')
        .filter((l) => l.includes('refused unsigned command')).length;
    const before = lines();
    const script = Array.from(
      { length: 200 },
      (_, i) => `XADD ${stream} * id flood-${i} method stop params {}`,
    ).join('\n');
    const r = await asNobody('redis-cli', ['-p', String(redis.port)], `${script}\n`);
    expect(r.exitCode, r.stderr).toBe(0);
    await waitFor('the flood to be dropped', async () => {
      const left = await store.redis.xrange(stream, '-', '+');
      return !left.some(([, f]) => (fieldMap(f).id ?? '').startsWith('flood-'));
    });
    expect(lines() - before).toBe(0); // this source was already logged once
  });

  it('a signed start replayed under a new request id, under its own id, or stale, starts nothing', async () => {
    // The real front end, with the key, starts one task: that works.
    const started = await scalpels([
      'start',
      '--nodes',
      node,
      '-t',
      'proc',
      '--set',
      'proc.interval=200ms',
      '--redis',
      redis.url,
      '--cluster-key-file',
      keyFile,
    ]);
    expect(started.exitCode, started.stderr).toBe(0);
    const taskId = started.stdout.trim();
    expect(await tasks()).toBe(1);
    const workers = childrenOf(agent.proc.pid!).length;
    // The attacker reads the signed request from the stream...
    const entries = await attackerRedis('XRANGE', stream, '-', '+');
    expect(entries.stdout).toContain(taskId);
    const signed = (await store.redis.xrange(stream, '-', '+'))
      .map(([, f]) => fieldMap(f))
      .find((f) => f.method === 'start' && f.params?.includes(taskId))!;
    expect(signed.sig).toMatch(/^[0-9a-f]{64}$/);
    const xadd = (f: Record<string, string>) =>
      attackerRedis('XADD', stream, '*', ...Object.entries(f).flat());
    // ...replays it under a new request id (the signature no longer matches)...
    await xadd({ ...signed, id: `${signed.id}-again` });
    // ...and under its own id, after deleting every key that remembers it.
    const keys = (await attackerRedis('--raw', 'KEYS', `scalpels:*${signed.id}*`)).stdout
      .split('\n')
      .filter(Boolean);
    expect(keys.length).toBeGreaterThan(0);
    expect((await attackerRedis('DEL', ...keys)).exitCode).toBe(0);
    await xadd(signed);
    await waitFor('both replays to be refused', () =>
      /refused replayed command start/.test(agent.output()),
    ).catch((e: Error) => {
      throw new Error(`${e.message}; agent said:\n${agent.output()}`);
    });
    await waitFor('the replays to leave the stream', async () => {
      const left = (await store.redis.xrange(stream, '-', '+')).map(([, f]) => fieldMap(f).id);
      return (
        !left.includes(`${signed.id}-again`) && left.filter((i) => i === signed.id).length <= 1
      );
    });
    // A request made with the key but long ago (captured, held back) is stale.
    const key = ClusterKey.fromFile(keyFile);
    const old = key.signRequest({
      id: 'old-1',
      node,
      method: 'start',
      params: JSON.stringify({ tracers: [{ name: 'proc' }] }),
      ts: String(Date.now() - 10 * 60_000),
      from: 'captured',
    });
    await xadd({ ...old });
    await waitFor('the stale request to be refused', () =>
      /refused stale command/.test(agent.output()),
    );
    expect(await tasks()).toBe(1);
    expect(childrenOf(agent.proc.pid!).length).toBe(workers);
    const stopped = await scalpels([
      'stop',
      taskId,
      '--redis',
      redis.url,
      '--cluster-key-file',
      keyFile,
    ]);
    expect(stopped.exitCode, stopped.stderr).toBe(0);
  });

  it('a node registered by a client without the key is not listed, and --nodes all skips it', async () => {
    const fake = JSON.stringify({
      node: 'fake-node',
      pid: 1,
      version: '9.9.9',
      startedAt: new Date().toISOString(),
      heartbeatAt: Date.now(),
      periodMs: 60_000,
      tracers: 0,
    });
    expect(
      (await attackerRedis('SET', 'scalpels:node:fake-node', fake, 'EX', '300')).exitCode,
    ).toBe(0);
    expect((await attackerRedis('HSET', 'scalpels:nodes', 'fake-node', fake)).exitCode).toBe(0);
    // A real entry copied under another name does not pass either (the name is signed).
    const real = (await store.redis.get(`scalpels:node:${node}`))!;
    await attackerRedis('SET', 'scalpels:node:copied-node', real, 'EX', '300');
    await attackerRedis('HSET', 'scalpels:nodes', 'copied-node', real);
    const listed = await scalpels([
      'nodes',
      '--json',
      '--redis',
      redis.url,
      '--cluster-key-file',
      keyFile,
    ]);
    expect(listed.exitCode, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { node: string }[]).map((n) => n.node)).toEqual([node]);
    const k = ['--redis', redis.url, '--cluster-key-file', keyFile];
    const all = await scalpels(['start', '--nodes', 'all', '-t', 'proc', '--json', ...k]);
    expect(all.exitCode, all.stderr).toBe(0);
    const started = JSON.parse(all.stdout) as { taskId: string; nodes: string[] };
    expect(started.nodes).toEqual([node]);
    expect((await scalpels(['stop', started.taskId, ...k])).exitCode).toBe(0);
  });

  it('a front end without the key is refused before sending; a forged answer is not believed', async () => {
    const noKey = await scalpels(['start', '--nodes', node, '-t', 'proc', '--redis', redis.url], {
      SCALPELS_CLUSTER_KEY_FILE: '',
    });
    expect(noKey.exitCode).toBe(1);
    expect(noKey.stderr).toMatch(/cluster commands are signed: give --cluster-key-file/);
    // A node nobody serves: the attacker answers in its place, unsigned, as soon as it sees the
    // request. The front end keeps waiting for a signed answer and gives up.
    const cluster = new Cluster(redis.url, ClusterKey.fromFile(keyFile));
    const ghost = 'ghost-node';
    const forger = (async () => {
      for (let i = 0; i < 200; i++) {
        const e = await store.redis.xrange(`scalpels:commands:${ghost}`, '-', '+');
        const id = e.length ? fieldMap(e[0]![1]).id : undefined;
        if (id) {
          await attackerRedis(
            'RPUSH',
            `scalpels:reply:${id}`,
            JSON.stringify({ result: { taskId: 'forged' } }),
          );
          await attackerRedis(
            'RPUSH',
            `scalpels:reply:${id}`,
            JSON.stringify({
              id,
              node: ghost,
              body: '{"result":1}',
              ts: Date.now(),
              sig: 'cd'.repeat(32),
            }),
          );
          return true;
        }
        await new Promise((r) => setTimeout(r, 25));
      }
      return false;
    })();
    await expect(cluster.send(ghost, 'status', {}, 3000)).rejects.toThrow(
      /did not answer status within 3 s/,
    );
    expect(await forger).toBe(true);
    await cluster.close();
  });
});
