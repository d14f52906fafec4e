import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { capability } from '@scalpels/core/testing';
import { RedisStore, decodeBatch, fieldMap } from '@scalpels/core/engine';

const cli = fileURLToPath(new URL('../cli/dist/main.js', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-cluster-'));
const hasRedisServer = capability(
  'redis-server',
  existsSync('/usr/bin/redis-server'),
  'redis-server is not installed',
);
const procs: ResultPromise[] = [];
afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await Promise.allSettled(procs);
  rmSync(scratch, { recursive: true, force: true });
});

const portUp = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

/** A private Redis for one test, persisting to an append-only file so that a restart keeps data. */
async function redisServer(port: number, dir: string): Promise<{ proc: ResultPromise }> {
  const proc = execa(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      '--dir',
      dir,
    ],
    { reject: false },
  );
  procs.push(proc);
  for (let i = 0; i < 100 && !(await portUp(port)); i++)
    await new Promise((r) => setTimeout(r, 100));
  return { proc }; // wrapped: an execa process is a thenable
}

/** Wrapped in an object: an execa process is a thenable, and returning it would await its exit. */
async function agent(redis: string, node: string): Promise<{ proc: ResultPromise }> {
  const proc = execa(
    process.execPath,
    [
      cli,
      'agent',
      '--redis',
      redis,
      '--node',
      node,
      '--socket',
      join(scratch, `${node}.sock`),
      '--heartbeat',
      '500ms',
    ],
    {
      reject: false,
      all: true,
      env: { NO_COLOR: '1' },
    },
  );
  procs.push(proc);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.all!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('cluster member')) resolve();
    });
    void proc.then(() => reject(new Error(`agent ${node} exited: ${out}`)));
  });
  return { proc };
}

const scalpels = (args: string[], redis: string) =>
  execa(process.execPath, [cli, ...args, '--redis', redis], {
    reject: false,
    env: { NO_COLOR: '1' },
  });

interface Report {
  task: { status: string; nodes: string[] };
  combined?: {
    tracer: string;
    nodes: string[];
    series: { name: string; sum: number; points: number }[];
  }[];
  tracers: {
    node: string;
    status: string;
    records: number;
    dropped: number;
    error: string | null;
    series: { name: string; points: number; sum: number }[];
  }[];
}

describe.runIf(hasRedisServer)('multi-node through Redis', () => {
  it('three agents: one start --nodes all, stop, and a report with every node', async () => {
    const port = 31000 + Math.floor(Math.random() * 9000);
    const dir = mkdtempSync(join(scratch, 'redis-'));
    await redisServer(port, dir);
    const redis = `redis://127.0.0.1:${port}/0`;
    const agents = (
      await Promise.all(['node-a', 'node-b', 'node-c'].map((n) => agent(redis, n)))
    ).map((a) => a.proc);
    const nodes = JSON.parse((await scalpels(['nodes', '--json'], redis)).stdout) as {
      node: string;
      status: string;
    }[];
    expect(nodes.map((n) => `${n.node}:${n.status}`)).toEqual([
      'node-a:alive',
      'node-b:alive',
      'node-c:alive',
    ]);
    const started = await scalpels(
      ['start', '--nodes', 'all', '-t', 'proc', '--set', 'proc.interval=200ms'],
      redis,
    );
    expect(started.exitCode, started.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 1500));
    const status = JSON.parse((await scalpels(['status', '--json'], redis)).stdout) as {
      tasks: { node: string }[];
    };
    expect(status.tasks.map((t) => t.node).sort()).toEqual(['node-a', 'node-b', 'node-c']);
    const stopped = await scalpels(['stop', '--last'], redis);
    expect(stopped.exitCode, stopped.stderr).toBe(0);
    const report = JSON.parse(
      (await scalpels(['report', '--last', '--format', 'json'], redis)).stdout,
    ) as Report;
    expect(report.task.status).toBe('stopped');
    expect(report.task.nodes).toEqual(['node-a', 'node-b', 'node-c']);
    expect(report.tracers.map((t) => t.node).sort()).toEqual(['node-a', 'node-b', 'node-c']);
    for (const t of report.tracers) {
      expect(t.status).toBe('stopped');
      expect(t.records).toBeGreaterThan(0);
    }
    // Combined figures: a counter's total over the cluster is the sum of the nodes' totals.
    const sumOf = (series: Report['tracers'][0]['series']) =>
      series.find((s) => s.name === 'kernel.context_switches')!.sum;
    const combined = report.combined!.find((c) => c.tracer === 'proc')!;
    expect(combined.nodes.sort()).toEqual(['node-a', 'node-b', 'node-c']);
    expect(sumOf(combined.series)).toBeCloseTo(
      report.tracers.reduce((a, t) => a + sumOf(t.series), 0),
      6,
    );
    const text = await scalpels(['report', '--last'], redis);
    expect(text.stdout).toMatch(/combined proc over 3 nodes/);
    for (const a of agents) a.kill('SIGTERM');
    await Promise.all(agents);
  });

  it('a node killed with SIGKILL is lost within three heartbeats and its tracers are interrupted', async () => {
    const port = 31000 + Math.floor(Math.random() * 9000);
    await redisServer(port, mkdtempSync(join(scratch, 'redis-')));
    const redis = `redis://127.0.0.1:${port}/0`;
    const [a, b] = (await Promise.all([agent(redis, 'node-a'), agent(redis, 'node-b')])).map(
      (x) => x.proc,
    );
    expect(
      (
        await scalpels(
          ['start', '--nodes', 'all', '-t', 'proc', '--set', 'proc.interval=200ms'],
          redis,
        )
      ).exitCode,
    ).toBe(0);
    await new Promise((r) => setTimeout(r, 800));
    b!.kill('SIGKILL');
    await b;
    await new Promise((r) => setTimeout(r, 1500)); // three heartbeat periods of 500 ms
    const nodes = JSON.parse((await scalpels(['nodes', '--json'], redis)).stdout) as {
      node: string;
      status: string;
    }[];
    expect(nodes.find((n) => n.node === 'node-b')?.status).toBe('lost');
    expect(nodes.find((n) => n.node === 'node-a')?.status).toBe('alive');
    const report = JSON.parse(
      (await scalpels(['report', '--last', '--format', 'json'], redis)).stdout,
    ) as Report;
    const lost = report.tracers.find((t) => t.node === 'node-b')!;
    expect(lost.status).toBe('interrupted');
    expect(lost.error).toMatch(/node node-b lost/);
    expect(report.tracers.find((t) => t.node === 'node-a')!.status).toBe('running');
    await scalpels(['stop', '--last'], redis);
    a!.kill('SIGTERM');
    await a;
  });

  it('Redis down in the middle of a task: the agent keeps tracing, catches up in order, drops nothing', async () => {
    const outageMs = Number(process.env.SCALPELS_OUTAGE_MS ?? 20_000);
    const port = 31000 + Math.floor(Math.random() * 9000);
    const dir = mkdtempSync(join(scratch, 'redis-'));
    let { proc: server } = await redisServer(port, dir);
    const redis = `redis://127.0.0.1:${port}/0`;
    const { proc: node } = await agent(redis, 'node-a');
    const started = await scalpels(
      ['start', '--nodes', 'node-a', '-t', 'proc', '--set', 'proc.interval=250ms'],
      redis,
    );
    expect(started.exitCode, started.stderr).toBe(0);
    const taskId = started.stdout.trim();
    await new Promise((r) => setTimeout(r, 1000));
    server.kill('SIGTERM');
    await server;
    await new Promise((r) => setTimeout(r, outageMs));
    ({ proc: server } = await redisServer(port, dir));
    await new Promise((r) => setTimeout(r, 2000)); // reconnect, heartbeat, catch up
    expect((await scalpels(['stop', taskId], redis)).exitCode).toBe(0);
    const report = JSON.parse(
      (await scalpels(['report', taskId, '--format', 'json'], redis)).stdout,
    ) as Report;
    const t = report.tracers[0]!;
    expect(t.status).toBe('stopped');
    expect(t.dropped).toBe(0);
    // One kernel.context_switches point per interval: the timestamps must have no hole.
    const store = new RedisStore(redis);
    expect(await store.findTask(taskId)).toBeDefined(); // also waits for the connection
    const entries = await store.redis.xrange(store.key.records(taskId), '-', '+');
    const ts: number[] = [];
    for (const [, fields] of entries) {
      const b = decodeBatch(fieldMap(fields).b!);
      const idx = b.s.findIndex(([name]) => name === 'kernel.context_switches');
      for (const [i, at] of b.p) if (i === idx) ts.push(at);
    }
    await store.close();
    expect(ts.length).toBeGreaterThan((outageMs + 3000) / 250 - 4);
    const gaps = ts.slice(1).map((x, i) => x - ts[i]!);
    expect(Math.max(...gaps)).toBeLessThan(750);
    expect(gaps.every((g) => g > 0)).toBe(true); // in order
    node.kill('SIGTERM');
    await node;
  });
});
