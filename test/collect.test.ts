import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '@scalpels/core/testing';
import { RedisStore } from '@scalpels/core/engine';
import { sharedRedis } from './private-redis.js';

const cli = fileURLToPath(new URL('../cli/dist/main.js', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-collect-'));
// The machine's Redis under a key prefix of this file's, deleted afterwards.
const shared = await sharedRedis('collect');
const hasRedis = shared.available;
const redisUrl = shared.url();

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const scalpels = (args: string[]) => runCli(args, { cli, env: { NO_COLOR: '1' }, timeoutMs: 0 });

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
