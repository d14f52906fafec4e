import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Schema, TraceRecord } from '../api.js';
import { parseRedisUrl, redact, RedisStore } from './redis.js';
import { hasRedisServer, privateRedisServers, sharedRedis } from './redis.test-helpers.js';
import { storeSuite } from './store-suite.js';

const shared = await sharedRedis('store');
const startRedis = privateRedisServers();
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-redis-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

if (shared.available) storeSuite('redis', () => new RedisStore(shared.url()));

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

describe.runIf(hasRedisServer())('Redis store while Redis goes away', () => {
  it('buffers while Redis is down (spilling to disk), then catches up in order with nothing dropped', async () => {
    const server = await startRedis();
    const spilldir = join(scratch, 'spill');
    const store = new RedisStore(`${server.url}?buffer=2000&spilldir=${spilldir}`);
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
    await server.stop('SIGKILL');
    for (let i = 0; i < 200; i++) await tick(); // Redis is gone: kept in memory, then in the spill file
    expect(readdirSync(spilldir).length).toBeGreaterThan(0);
    // A line for a stream outside this store's prefix is never sent when the spill is drained.
    const spillFile = join(spilldir, readdirSync(spilldir)[0]!);
    appendFileSync(
      spillFile,
      `${JSON.stringify({ stream: 'elsewhere:records:x', tracerId: 1, json: '{}', records: 1 })}\n`,
    );
    await server.restart();
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
    expect(await store.redis.exists('elsewhere:records:x')).toBe(0);
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
    await server.stop('SIGKILL');
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
