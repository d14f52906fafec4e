import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { capability } from '@scalpels/core/testing';
import { RedisStore } from '@scalpels/core/engine';

const cli = fileURLToPath(new URL('../cli/dist/main.js', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-collect-'));
const reachable = await new Promise<boolean>((resolve) => {
  const s = net.connect(6379, '127.0.0.1', () => (s.destroy(), resolve(true)));
  s.once('error', () => resolve(false));
});
const hasRedis = capability(
  'redis',
  reachable,
  'no Redis on 127.0.0.1:6379 (scripts/setup.sh starts it)',
);
const prefix = `scalpels-collect-${randomBytes(4).toString('hex')}:`;
const redisUrl = `redis://127.0.0.1:6379/0?prefix=${prefix}`;

afterAll(async () => {
  rmSync(scratch, { recursive: true, force: true });
  if (!hasRedis) return;
  const store = new RedisStore(redisUrl);
  await store.listTasks();
  const keys = await store.redis.keys(`${prefix}*`);
  if (keys.length) await store.redis.del(...keys);
  await store.close();
});

const scalpels = (args: string[]) =>
  execa(process.execPath, [cli, ...args], { reject: false, env: { NO_COLOR: '1' } });

interface Report {
  tracers: {
    tracer: string;
    status: string;
    records: number;
    series: {
      name: string;
      labels: Record<string, string>;
      points: number;
      sum: number;
      last: number;
    }[];
  }[];
}

describe.runIf(hasRedis)('scalpels run on the Redis store, then collect into SQLite', () => {
  it('collects every record once, re-delivers what a dead collector left, and skips duplicates', async () => {
    const run = await scalpels([
      'run',
      '-t',
      'proc',
      '--set',
      'proc.interval=100ms',
      '--store',
      redisUrl,
      '--format',
      'none',
      '--',
      'sleep',
      '1',
    ]);
    expect(run.exitCode, run.stderr).toBe(0);
    const fromRedis = JSON.parse(
      (await scalpels(['report', '--last', '--format', 'json', '--store', redisUrl])).stdout,
    ) as Report;
    expect(fromRedis.tracers[0]!.records).toBeGreaterThan(0);

    // A collector that read some batches and died before acknowledging them.
    const store = new RedisStore(redisUrl);
    const [task] = await store.listTasks();
    const stream = store.key.records(task!.id);
    await store.redis.xgroup('CREATE', stream, 'collectors', '0', 'MKSTREAM');
    const stolen = (await store.redis.xreadgroup(
      'GROUP',
      'collectors',
      'dead-collector',
      'COUNT',
      3,
      'STREAMS',
      stream,
      '>',
    )) as [string, unknown[]][];
    expect(stolen[0]![1]).toHaveLength(3);

    const sqlite = `sqlite://${join(scratch, 'collected.db')}`;
    const first = await scalpels([
      'collect',
      '--from',
      redisUrl,
      '--to',
      sqlite,
      '--claim-idle',
      '1ms',
      '--json',
    ]);
    expect(first.exitCode, first.stderr).toBe(0);
    const r1 = JSON.parse(first.stdout) as { records: number; duplicates: number };
    expect(r1.records).toBe(fromRedis.tracers[0]!.records);
    expect(r1.duplicates).toBe(0);
    const pending = (await store.redis.xpending(stream, 'collectors')) as [number];
    expect(pending[0]).toBe(0);

    // Everything delivered again (as after a crash between commit and acknowledgement): all duplicates.
    await store.redis.xgroup('SETID', stream, 'collectors', '0');
    const again = JSON.parse(
      (await scalpels(['collect', '--from', redisUrl, '--to', sqlite, '--json'])).stdout,
    ) as { records: number; duplicates: number; entries: number };
    expect(again.records).toBe(0);
    expect(again.duplicates).toBe(again.entries);
    await store.close();

    const fromSqlite = JSON.parse(
      (await scalpels(['report', task!.id, '--format', 'json', '--store', sqlite])).stdout,
    ) as Report;
    const key = (s: Report['tracers'][0]['series'][0]) => `${s.name}${JSON.stringify(s.labels)}`;
    const a = new Map(fromRedis.tracers[0]!.series.map((s) => [key(s), s]));
    const b = fromSqlite.tracers[0]!.series;
    expect(b.length).toBe(a.size);
    for (const s of b) {
      const r = a.get(key(s))!;
      expect({ points: s.points, last: s.last }).toEqual({ points: r.points, last: r.last });
      expect(s.sum).toBeCloseTo(r.sum, 6); // summation order differs between the stores
    }
    expect(fromSqlite.tracers[0]!.status).toBe('stopped');
  });
});
