import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import type { Schema, TraceRecord } from '../api.js';
import { capability } from '../testing/index.js';
import { connectRedis, parseRedisUrl, redact, RedisStore } from './redis.js';
import { storeSuite } from './store-suite.js';

const reachable = await new Promise<boolean>((resolve) => {
  const s = net.connect(6379, '127.0.0.1', () => {
    s.destroy();
    resolve(true);
  });
  s.once('error', () => resolve(false));
});
const hasRedis = capability(
  'redis',
  reachable,
  'no Redis on 127.0.0.1:6379 (scripts/setup.sh starts it)',
);
const hasServer = capability(
  'redis-server',
  existsSync('/usr/bin/redis-server'),
  'redis-server binary not installed',
);
const prefix = `scalpels-test-${randomBytes(4).toString('hex')}:`;
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-redis-'));

afterAll(async () => {
  rmSync(scratch, { recursive: true, force: true });
  if (!hasRedis) return;
  const { redis } = connectRedis('redis://127.0.0.1:6379/0');
  await redis.connect();
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

let seq = 0;
if (hasRedis)
  storeSuite('redis', () => new RedisStore(`redis://127.0.0.1:6379/0?prefix=${prefix}${++seq}:`));

const schema: Schema = {
  series: { tick: { kind: 'counter', unit: 'count', description: 'tick' } },
};

describe('Redis URLs', () => {
  it('parse password, TLS, db and store settings, and never show the password', () => {
    const p = parseRedisUrl(
      'rediss://user:s3cret@redis.example:6380/2?prefix=x:&maxlen=500&buffer=1024',
    );
    expect(p.options).toMatchObject({
      host: 'redis.example',
      port: 6380,
      db: 2,
      username: 'user',
      password: 's3cret',
      tls: {},
    });
    expect(p.store).toMatchObject({ prefix: 'x:', maxlen: 500, bufferBytes: 1024 });
    expect(p.display).toBe(
      'rediss://user:***@redis.example:6380/2?prefix=x:&maxlen=500&buffer=1024',
    );
    expect(redact('redis://:pw@h:1/0')).toBe('redis://:***@h:1/0');
    expect(() => parseRedisUrl('redis://h/abc')).toThrow(/bad database number/);
    expect(() => parseRedisUrl('redis://h/0?maxlen=-1')).toThrow(
      /maxlen must be a positive number/,
    );
  });
});

describe.runIf(hasServer)('Redis store while Redis goes away', () => {
  async function redisServer(port: number) {
    const proc = execa(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { reject: false },
    );
    for (let i = 0; i < 50; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      });
      // Wrapped: an execa process is a thenable, and returning it would wait for its exit.
      if (up) return { proc };
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('redis-server did not start');
  }

  it('buffers while Redis is down (spilling to disk), then catches up in order with nothing dropped', async () => {
    const port = 30000 + Math.floor(Math.random() * 20000);
    let { proc: server } = await redisServer(port);
    const spilldir = join(scratch, 'spill');
    const store = new RedisStore(`redis://127.0.0.1:${port}/0?buffer=2000&spilldir=${spilldir}`);
    const task = await store.createTask({
      name: 'outage',
      labels: {},
      nodes: ['n'],
      ownerPid: null,
      ownerStart: null,
      target: null,
      startedAt: Date.now(),
    });
    const tracer = await store.createTracer({
      taskId: task.id,
      tracer: 't',
      pluginPackage: 'p',
      pluginVersion: '1',
      node: 'n',
      options: {},
      technique: null,
    });
    const sink = store.recordSink(tracer, schema);
    let ts = 1;
    const tick = async (): Promise<void> => {
      const batch: TraceRecord[] = [{ kind: 'sample', series: 'tick', value: 1, ts: ts++ }];
      await sink.write(batch);
    };
    for (let i = 0; i < 10; i++) await tick();
    await sink.flush!();
    server.kill('SIGKILL');
    await server;
    for (let i = 0; i < 200; i++) await tick(); // Redis is gone: kept in memory, then in the spill file
    expect(readdirSync(spilldir).length).toBeGreaterThan(0);
    ({ proc: server } = await redisServer(port));
    for (let i = 0; i < 100 && store.redis.status !== 'ready'; i++)
      await new Promise((r) => setTimeout(r, 100));
    // A fresh server has lost everything; re-create the rows the report needs, as a restarted
    // persistent Redis would have kept them.
    await store.redis.set(store.key.task(task.id), JSON.stringify(task));
    await store.redis.zadd(store.key.tasks(), task.startedAt, task.id);
    await store.redis.set(store.key.tracer(tracer.id), JSON.stringify(tracer));
    await store.redis.rpush(store.key.taskTracers(task.id), String(tracer.id));
    await store.redis.hset(
      store.key.series(tracer.id),
      `tick\0{}`,
      JSON.stringify({ unit: 'count', kind: 'counter' }),
    );
    await sink.flush!();
    expect(sink.dropped!()).toBe(0);
    await sink.flush!(); // a second wait, for a slow machine
    const [s] = await store.seriesSummaries(tracer.id);
    // The 200 written during the outage all arrived, in order (last point is the newest).
    expect(s, JSON.stringify(s)).toMatchObject({
      points: 200,
      sum: 200,
      last: 1,
      lastTs: 210,
      firstTs: 11,
    });
    await store.close();
    server.kill('SIGKILL');
    await server;
  });

  it('drops the oldest batches when memory and spill file are full, and counts them', async () => {
    const spilldir = join(scratch, 'spill-full');
    // Nothing listens on this port: every batch stays buffered.
    const store = new RedisStore(`redis://127.0.0.1:1/0?buffer=300&spill=600&spilldir=${spilldir}`);
    const tracer = { id: 1, taskId: 'x' } as never;
    const sink = store.recordSink(tracer, schema);
    for (let i = 0; i < 100; i++)
      await sink.write([{ kind: 'sample', series: 'tick', value: 1, ts: i }]);
    expect(sink.dropped!()).toBeGreaterThan(0);
    expect(sink.dropped!()).toBeLessThan(100);
    store.redis.disconnect();
  });
});
